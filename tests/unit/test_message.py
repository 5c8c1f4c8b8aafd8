from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.model.message import Encode, Message, parse_message
from dispatcher.model.row import BOOKKEEPING_ATTRIBUTES, Row, content_hash
from tests.conftest import image, row
from tests.corpus import malformed_rows

DEFAULTS = {"default_from_email": "noreply@example.com", "default_from_name": "Example"}


def test_valid_row_parses_into_a_message_with_defaults() -> None:
    # GIVEN a row with only the required attributes
    raw = image(row("r1", insert_code={"name": "Alice"}, cc=["b@example.com"]))

    # WHEN it is parsed
    message = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    # THEN the sender comes from configuration and everything else from the row
    assert isinstance(message, Message)
    assert message.to == "alice@example.com"
    assert message.from_email == "noreply@example.com"
    assert message.from_name == "Example"
    assert message.encode is Encode.UTF_8
    assert message.cc == ("b@example.com",)
    assert message.insert_code == {"name": "Alice"}
    assert message.content_hash == content_hash(raw)


def test_row_values_override_defaults_and_send_after_keeps_its_offset() -> None:
    raw = image(
        row(
            "r1",
            **{
                "from": "shop@example.com",
                "from_name": "Shop",
                "encode": "ISO-2022-JP",
                "subject": "ご注文ありがとうございます",
                "send_after": "2026-12-01T09:00:00+09:00",
            },
        )
    )

    message = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    assert isinstance(message, Message)
    assert (message.from_email, message.from_name) == ("shop@example.com", "Shop")
    assert message.encode is Encode.ISO_2022_JP
    assert message.send_after == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("case", "raw", "attribute"), malformed_rows(), ids=[c[0] for c in malformed_rows()]
)
def test_each_malformed_row_gives_a_readable_problem_naming_its_attribute(
    case: str, raw: dict, attribute: str
) -> None:
    # WHEN a malformed row is parsed
    problems = parse_message(Row.from_image(case, raw), **DEFAULTS)

    # THEN it is a list of problems, one of which starts with the attribute at fault
    assert isinstance(problems, list), f"{case} was accepted"
    assert any(p.startswith(f"{attribute}:") for p in problems), problems
    assert all(len(p) < 400 for p in problems), "reasons stay readable"


def test_the_corpus_is_large_enough() -> None:
    assert len(malformed_rows()) >= 60


def test_every_problem_is_reported_at_once() -> None:
    raw = {"id": {"S": "x"}, "to": {"S": "nope"}, "encode": {"S": "EBCDIC"}}

    problems = parse_message(Row.from_image("x", raw), **DEFAULTS)

    assert isinstance(problems, list)
    assert {p.split(":")[0] for p in problems} == {"to", "subject", "text/html", "encode"}


def test_content_hash_covers_request_attributes_only() -> None:
    # GIVEN a row, and the same row with every bookkeeping attribute and an unknown one added
    plain = image(row("r1"))
    stamped = dict(plain)
    for name in BOOKKEEPING_ATTRIBUTES:
        stamped[name] = {"S": "whatever"}
    stamped["app_metadata"] = {"S": "tenant-7"}

    # THEN the hashes agree; and any request attribute change, revision included, changes it
    assert content_hash(plain) == content_hash(stamped)
    for name, value in [
        ("to", {"S": "bob@example.com"}),
        ("revision", {"N": "2"}),
        ("html", {"S": "<p>hi</p>"}),
        ("insert_code", {"M": {}}),
    ]:
        assert content_hash({**plain, name: value}) != content_hash(plain), name


def test_content_hash_ignores_set_member_order() -> None:
    a = {"to": {"S": "a@example.com"}, "tags": {"SS": ["x", "y"]}, "cc": {"SS": ["p", "q"]}}
    b = {"to": {"S": "a@example.com"}, "tags": {"SS": ["y", "x"]}, "cc": {"SS": ["q", "p"]}}
    assert content_hash(a) == content_hash(b)


def test_reply_to_and_list_unsubscribe_are_kept_for_the_api() -> None:
    raw = image(
        row(
            "r1",
            reply_to="Help@Example.com",
            reply_to_name="Support",
            list_unsubscribe_url="https://example.com/unsubscribe?u=7",
            list_unsubscribe_mailto="mailto:unsubscribe@example.com?subject=u7",
        )
    )

    message = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    assert isinstance(message, Message)
    assert (message.reply_to, message.reply_to_name) == ("Help@example.com", "Support")
    assert message.list_unsubscribe_url == "https://example.com/unsubscribe?u=7"
    assert message.list_unsubscribe_mailto == "mailto:unsubscribe@example.com?subject=u7"


def test_a_row_with_only_html_gets_a_readable_text_part() -> None:
    html = '<p>Hello <b>Hanako</b>,</p><p>your <a href="https://shop.example/o/7">order</a></p>'
    raw = image(row("r1", text=None, html=html))

    message = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    assert isinstance(message, Message)
    assert message.text == "Hello Hanako,\n\nyour order (https://shop.example/o/7)"
    assert message.html == html


def test_a_rows_own_text_is_kept_beside_its_html() -> None:
    raw = image(row("r1", text="Plain words", html="<p>Rich words</p>"))

    message = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    assert isinstance(message, Message)
    assert message.text == "Plain words"


def test_an_insert_code_key_with_an_underscore_says_what_the_provider_accepts() -> None:
    raw = image(row("r1", insert_code={"first_name": "Hanako"}))

    problems = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    assert isinstance(problems, list)
    [problem] = problems
    assert "'first_name' may hold only ASCII letters and digits" in problem
    assert "__firstname__" in problem


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        ({"subject": "s" * 256}, True),
        ({"subject": "s" * 257}, False),
        ({"text": "t" * 30_000}, True),
        ({"text": "t" * 30_001}, False),
        ({"from_name": "n" * 50}, True),
        ({"from_name": "n" * 51}, False),
        ({"to": "ab@c.d"}, True),
        ({"to": "a@b.c"}, False),
    ],
)
def test_the_apis_limits_hold_at_their_edges(values: dict, ok: bool) -> None:
    parsed = parse_message(Row.from_image("r1", image(row("r1", **values))), **DEFAULTS)
    assert isinstance(parsed, Message) is ok, parsed


def test_sizes_are_counted_as_sent_in_the_rows_encoding() -> None:
    # 10,001 hiragana are 30,003 bytes in UTF-8 but 20,008 in ISO-2022-JP
    text = "\u3042" * 10_001
    as_utf8 = parse_message(Row.from_image("r1", image(row("r1", text=text))), **DEFAULTS)
    as_jis = parse_message(
        Row.from_image("r1", image(row("r1", text=text, encode="ISO-2022-JP"))), **DEFAULTS
    )
    assert isinstance(as_utf8, list)
    assert isinstance(as_jis, Message)


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("send_after", "problem"),
    [
        ("9999-12-31T23:59:59-14:00", "out of range"),
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("2028-01-01T00:00:00+00:00", "more than 366 days ahead"),
    ],
)
def test_a_send_after_outside_the_sane_range_is_invalid(send_after: str, problem: str) -> None:
    raw = image(row("r1", send_after=send_after))

    problems = parse_message(Row.from_image("r1", raw), **DEFAULTS, now=NOW)

    assert isinstance(problems, list)
    assert any(p.startswith("send_after:") and problem in p for p in problems), problems


def test_a_send_after_within_a_year_is_kept_in_utc() -> None:
    raw = image(row("r1", send_after="2027-06-01T09:00:00+09:00"))

    message = parse_message(Row.from_image("r1", raw), **DEFAULTS, now=NOW)

    assert isinstance(message, Message)
    assert message.send_after == datetime(2027, 6, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attribute", "value", "named"),
    [
        ("subject", "Hi\x00there", "U+0000 (NUL)"),
        ("subject", "Hi\u2028there", "U+2028 (LINE SEPARATOR)"),
        ("subject", "Hi\x85there", "U+0085 (NEL)"),
        ("from_name", "Shop\x7f", "U+007F (DEL)"),
        ("from_name", "Bank \u202egnp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("subject", "\u2066isolated\u2069", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ],
)
def test_header_controls_are_refused_with_the_character_named(
    attribute: str, value: str, named: str
) -> None:
    raw = image(row("r1", **{attribute: value}))

    problems = parse_message(Row.from_image("r1", raw), **DEFAULTS)

    assert isinstance(problems, list)
    [problem] = [p for p in problems if p.startswith(f"{attribute}:")]
    assert named in problem


def test_a_tab_and_right_to_left_text_stay_allowed_in_headers() -> None:
    # Hebrew and Arabic need no override characters: the bidi algorithm orders them
    raw = image(
        row(
            "r1", subject="Order\t#7 \u05e9\u05dc\u05d5\u05dd", from_name="\u0645\u062a\u062c\u0631"
        )
    )

    assert isinstance(parse_message(Row.from_image("r1", raw), **DEFAULTS), Message)


def test_any_item_renders_for_people_even_a_mangled_one() -> None:
    from dispatcher.model.row import plain

    mangled = {
        "id": {"S": "poison-2"},
        "insert_code": {"M": {"S": "x"}},  # as moto once handed it back
        "revision": {"N": "2"},
        "odd": {"X": b"\x00"},
    }

    shown = plain(mangled)

    assert shown["id"] == "poison-2"
    assert shown["revision"] == 2
    assert shown["insert_code"] == {"M": {"S": "x"}}
    assert isinstance(shown["odd"], str)
