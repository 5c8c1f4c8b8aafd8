"""Hypothesis strategies for send-table items: anything DynamoDB can store, and rows that
look like what producers write (every character class a header or an encoder may trip on)."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from dispatcher.model.row import REQUEST_ATTRIBUTES

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
items = st.dictionaries(
    st.one_of(st.sampled_from(sorted(REQUEST_ATTRIBUTES)), _names),
    st.one_of(_value, _plausible),
    max_size=10,
)


#: Characters that trip headers and encoders: controls, bidi overrides, line breaks, emoji,
#: Japanese, quotes and angle brackets; and plain ASCII most of the time.
_tricky = st.sampled_from(
    [
        "\r",
        "\n",
        "\x00",
        "\x85",
        "\u2028",
        "\u202e",
        "\u2066",
        "😀",
        "請求書",
        "ｶﾀｶﾅ",
        '"',
        "<",
        ">",
        ",",
    ]
)
_word = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
_phrase = st.lists(
    st.one_of(_word, _word, _word, _word, _word, _tricky), min_size=1, max_size=6
).map(" ".join)


@st.composite
def producer_rows(draw: Any) -> dict[str, Any]:
    """A row as a producer might write it, plain values: placeholders and insert_code
    values among its parts, tricky characters anywhere, either encoding."""
    keys = draw(st.lists(st.sampled_from(["name", "order", "code"]), unique=True, max_size=3))
    codes = {k: draw(_phrase) for k in keys}
    holes = [f"__{k}__" for k in keys]

    def part() -> str:
        return " ".join(
            draw(
                st.lists(st.one_of(_phrase, *map(st.just, holes or ["x"])), min_size=1, max_size=5)
            )
        )

    row: dict[str, Any] = {
        "id": "p-1",
        "to": "alice@example.com",
        "subject": part(),
        "text": part(),
    }
    if draw(st.booleans()):
        row["html"] = "<p>" + part() + "</p>"
    if codes:
        row["insert_code"] = codes
    if draw(st.booleans()):
        row["from_name"] = draw(_phrase)
    if draw(st.booleans()):
        row["reply_to"], row["reply_to_name"] = "help@example.com", draw(_phrase)
    row["encode"] = draw(st.sampled_from(["UTF-8", "ISO-2022-JP"]))
    return row


def as_stream_value(value: Any) -> Any:
    """A table's wire value as Lambda's stream event carries it (binaries base64)."""
    if isinstance(value, dict) and len(value) == 1:
        [(tag, inner)] = value.items()
        if tag == "B":
            return {"B": base64.b64encode(inner).decode()}
        if tag == "BS":
            return {"BS": [base64.b64encode(v).decode() for v in reversed(inner)]}
        if tag in ("SS", "NS"):
            return {tag: list(reversed(inner))}
        if tag == "M":
            return {"M": {k: as_stream_value(v) for k, v in inner.items()}}
        if tag == "L":
            return {"L": [as_stream_value(v) for v in inner]}
    return value
