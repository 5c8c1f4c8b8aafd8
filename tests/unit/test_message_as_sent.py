"""The parser holds every limit and rule to the mail as it will be sent, not only to the
row: values filled in from insert_code, every value that reaches a header, the declared
encoding, one unsubscribe URI, escaped HTML."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.model.message import Message, parse_message
from dispatcher.model.row import Row
from tests.conftest import image, row

DEFAULTS = {"default_from_email": "noreply@example.com"}


def parsed(**values: Any) -> Message | list[str]:
    return parse_message(Row.from_image("r1", image(row("r1", **values))), **DEFAULTS)


def problem_of(result: Message | list[str], attribute: str) -> str:
    assert isinstance(result, list), "the row was accepted"
    [found] = [p for p in result if p.startswith(f"{attribute}:")]
    return found


def test_a_small_row_that_fills_into_megabytes_is_refused_by_arithmetic() -> None:
    # GIVEN a 32 KB row: 2,000 placeholders and a 6,000-character value would make 12 MB
    html = "<p>__v__</p>" * 2000
    result = parsed(html=html, text="x", insert_code={"v": "y" * 6000})

    # THEN it is invalid, naming html and the size as sent
    found = problem_of(result, "html")
    assert "12,0" in found
    assert "insert_code filled in" in found


def test_the_text_and_subject_are_measured_filled_too() -> None:
    assert "with insert_code filled in" in problem_of(
        parsed(text="__a__ " * 100, insert_code={"a": "z" * 400}), "text"
    )
    assert "characters with insert_code filled in" in problem_of(
        parsed(subject="Hi __n__", insert_code={"n": "x" * 300}), "subject"
    )
    # a value within the limits, filled, is fine
    assert isinstance(parsed(subject="Hi __n__", insert_code={"n": "x" * 200}), Message)


def test_an_insert_code_value_larger_than_any_part_is_refused() -> None:
    found = problem_of(parsed(insert_code={"unused": "x" * 70_001}), "insert_code")
    assert "more than any part" in found


@pytest.mark.parametrize("character", ["\u202e", "\r\n", "\x00", "\u2028"])
def test_a_value_filled_into_the_subject_is_held_to_the_header_rules(character: str) -> None:
    # GIVEN an insert_code value carrying a control or bidi character, used in the subject
    result = parsed(subject="Order for __name__", insert_code={"name": f"Eve{character}x"})
    # THEN the row is invalid, naming insert_code and what the character would do
    assert "filled into the subject" in problem_of(result, "insert_code")
    # while the same value only in the body is allowed (a body is not a header)
    assert isinstance(parsed(text="Dear __name__", insert_code={"name": "Eve\u202ex"}), Message)


@pytest.mark.parametrize(
    ("values", "attribute"),
    [
        ({"reply_to": "r@example.com", "reply_to_name": "Support 😀"}, "reply_to_name"),
        ({"from_name": "Shop 😀"}, "from_name"),
        ({"text": "Hi __n__", "insert_code": {"n": "😀"}}, "insert_code"),
        (
            {"attachments": [{"key": "files/a.pdf", "filename": "請求書😀.pdf"}]},
            "attachments",
        ),
    ],
    ids=["reply_to_name", "from_name", "insert_code", "filename"],
)
def test_every_field_is_checked_against_the_declared_encoding(
    values: dict[str, Any], attribute: str
) -> None:
    result = parsed(encode="ISO-2022-JP", **values)
    assert "ISO-2022-JP cannot encode" in problem_of(result, attribute)
    # and in UTF-8 the same row is fine
    assert isinstance(parsed(**values), Message)


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/u>,<https://evil.example/x",
        "https://a.example/u, https://evil.example/x",
        "https://a.example/u x",
        "http://a.example/u",
        "https:///no-host",
        "javascript:alert(1)",
        'https://a.example/"quoted"',
    ],
)
def test_list_unsubscribe_url_is_one_https_uri(url: str) -> None:
    assert "list_unsubscribe_url:" in problem_of(
        parsed(list_unsubscribe_url=url), "list_unsubscribe_url"
    )


def test_list_unsubscribe_values_that_are_one_uri_pass() -> None:
    message = parsed(
        list_unsubscribe_url="https://a.example/u?id=7&t=x%2Cy",
        list_unsubscribe_mailto="mailto:unsubscribe@example.com?subject=stop",
    )
    assert isinstance(message, Message)
    bad = parsed(list_unsubscribe_mailto="mailto:a@example.com>,<mailto:b@example.com")
    assert "list_unsubscribe_mailto:" in problem_of(bad, "list_unsubscribe_mailto")


def test_values_filled_into_html_are_escaped_unless_the_row_opts_out() -> None:
    values = {"name": '<a href="https://evil.example">Click</a>'}
    # GIVEN a customer's name with markup, filled into the html
    message = parsed(html="<p>Dear __name__</p>", text="Dear __name__", insert_code=values)
    assert isinstance(message, Message)
    # THEN the html carries it escaped, the text as it is
    assert (
        message.html == "<p>Dear &lt;a href=&quot;https://evil.example&quot;&gt;Click&lt;/a&gt;</p>"
    )
    assert message.filled().text == 'Dear <a href="https://evil.example">Click</a>'
    # AND a row that names the key in insert_code_unescaped gets it as markup
    raw = parsed(html="<p>__name__</p>", insert_code=values, insert_code_unescaped=["name"])
    assert isinstance(raw, Message)
    assert raw.filled().html == '<p><a href="https://evil.example">Click</a></p>'


def test_insert_code_unescaped_names_keys_of_insert_code() -> None:
    found = problem_of(
        parsed(insert_code={"a": "1"}, insert_code_unescaped=["b"]), "insert_code_unescaped"
    )
    assert "'b' is not a key of insert_code" in found


def test_a_row_sends_only_as_a_sender_the_deployment_allows() -> None:
    def as_sender(address: str, allowed: tuple[str, ...]) -> Message | list[str]:
        image_ = image(row("r1", **{"from": address}))
        return parse_message(Row.from_image("r1", image_), **DEFAULTS, allowed_from=allowed)

    # the deployment's default: any address at the default sender's domain
    default = ("@example.com",)
    assert isinstance(as_sender("shop@example.com", default), Message)
    found = problem_of(as_sender("ceo@bank.example", default), "from")
    assert "'ceo@bank.example' is not among the senders allowed (@example.com)" in found
    # a caller that does not know the deployment checks no sender (the dispatcher does)
    assert isinstance(parsed(**{"from": "ceo@bank.example"}), Message)
    # with ALLOWED_FROM: its addresses exactly, its @domains wholly
    allowed = ("billing@example.com", "@news.example.com")

    assert isinstance(as_sender("Billing@Example.com", allowed), Message)
    assert isinstance(as_sender("weekly@news.example.com", allowed), Message)
    assert "from:" in problem_of(as_sender("shop@example.com", allowed), "from")
    assert "from:" in problem_of(as_sender("x@evil-news.example.com", allowed), "from")
