"""Property: for any item DynamoDB can store, parsing returns a message or problems, never
raises (a raise would leave the row with no status, retried until the mapping gave up)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.model.message import Message, parse_message
from dispatcher.model.row import REQUEST_ATTRIBUTES, Row

# DynamoDB's rules: names and map keys are non-empty, sets are non-empty and unique,
# strings are valid Unicode (no lone surrogates), numbers are decimal strings.
_names = st.text(min_size=1, max_size=12)
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_number = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
)
_scalar = st.one_of(
    _text.map(lambda s: {"S": s}),
    _number.map(lambda n: {"N": n}),
    st.binary(max_size=8).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(_text, min_size=1, max_size=3).map(lambda s: {"SS": sorted(s)}),
    st.sets(st.integers(0, 99).map(str), min_size=1, max_size=3).map(lambda s: {"NS": sorted(s)}),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(_names, inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=8,
)
# Mostly the attributes the parser reads, with plausible values mixed in.
_plausible = st.sampled_from(
    [
        {"S": "a@example.com"},
        {"S": "2026-12-24T09:00:00+09:00"},
        {"S": "9999-12-31T23:59:59-14:00"},
        {"S": "UTF-8"},
        {"S": "ISO-2022-JP"},
        {"L": [{"S": "b@example.com"}]},
        {"M": {"name": {"S": "Hanako"}}},
    ]
)
_items = st.dictionaries(
    st.one_of(st.sampled_from(sorted(REQUEST_ATTRIBUTES)), _names),
    st.one_of(_value, _plausible),
    max_size=10,
)


@given(_items)
def test_parsing_any_storable_item_returns_a_message_or_problems(item: dict[str, Any]) -> None:
    parsed = parse_message(
        Row.from_image("row-1", {**item, "id": {"S": "row-1"}}),
        default_from_email="noreply@example.com",
    )

    assert isinstance(parsed, Message) or (
        isinstance(parsed, list) and parsed and all(isinstance(p, str) for p in parsed)
    )
