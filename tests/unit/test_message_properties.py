"""Property: for any item DynamoDB can store, parsing returns a message or problems, never
raises (a raise would leave the row with no status, retried until the mapping gave up)."""

from __future__ import annotations

from typing import Any

from hypothesis import given

from dispatcher.model.message import Message, parse_message
from dispatcher.model.row import Row
from tests.strategies import items


@given(items)
def test_parsing_any_storable_item_returns_a_message_or_problems(item: dict[str, Any]) -> None:
    parsed = parse_message(
        Row.from_image("row-1", {**item, "id": {"S": "row-1"}}),
        default_from_email="noreply@example.com",
    )

    assert isinstance(parsed, Message) or (
        isinstance(parsed, list) and parsed and all(isinstance(p, str) for p in parsed)
    )
