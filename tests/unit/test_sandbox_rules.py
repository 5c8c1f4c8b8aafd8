"""The sandbox refuses what blastengine's API refuses (../shared/BLASTENGINE.md), on its own."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.local.sandbox.rules import validate_transaction

VALID: dict[str, Any] = {
    "from": {"email": "shop@example.com", "name": "Shop"},
    "to": "alice@example.com",
    "subject": "Hello",
    "encode": "UTF-8",
    "text_part": "Hi __name__",
    "insert_code": [{"key": "__name__", "value": "Alice"}],
    "reply_to": {"email": "help@example.com", "name": "Support"},
    "list_unsubscribe": {"url": "https://example.com/u", "mailto": "mailto:u@example.com"},
}


def test_a_request_within_every_limit_passes() -> None:
    assert validate_transaction(VALID) == {}
    assert validate_transaction({**VALID, "encode": "ISO-2022-JP", "html_part": "<p>x</p>"}) == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text_part": None}, "text_part"),  # required, even beside html_part
        ({"text_part": "t" * 30_001}, "text_part"),
        ({"html_part": "h" * 70_001}, "html_part"),
        ({"subject": ""}, "subject"),
        ({"subject": "s" * 257}, "subject"),
        ({"to": "a@b.c"}, "to"),
        ({"to": "not an address"}, "to"),
        ({"from": {"email": "shop@example.com", "name": "n" * 51}}, "from.name"),
        ({"reply_to": {"email": "nope"}}, "reply_to.email"),
        ({"cc": [f"c{i}@example.com" for i in range(11)]}, "cc"),
        ({"insert_code": [{"key": "__first_name__", "value": "x"}]}, "insert_code[0].key"),
        ({"insert_code": [{"key": "__n__", "value": 5}]}, "insert_code[0].value"),
        ({"insert_code": [{"key": f"__k{i}__", "value": "v"} for i in range(51)]}, "insert_code"),
        ({"list_unsubscribe": {}}, "list_unsubscribe"),
        ({"list_unsubscribe": {"url": "ftp://x.example"}}, "list_unsubscribe.url"),
        ({"list_unsubscribe": {"mailto": "u@example.com"}}, "list_unsubscribe.mailto"),
        ({"list_unsubscribe": {"url": "https://x.example/" + "u" * 440}}, "list_unsubscribe.url"),
        ({"encode": "Shift_JIS"}, "encode"),
        ({"encode": "ISO-2022-JP", "text_part": "\U0001f600"}, "text_part"),
    ],
)
def test_each_documented_limit_is_refused_by_its_field(change: dict[str, Any], field: str) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    assert field in validate_transaction(body)
