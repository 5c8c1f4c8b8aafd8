"""Reading a table for people: pages that resume where they stopped, and reads that stop.

A page view or a count must cost a bounded number of DynamoDB calls however large the table is
and however much a filter throws away; what each returns says where to go on (a page token) or
that it stopped short (``capped``). :class:`~dispatcher.ops.admin.Admin` and
:mod:`~dispatcher.ops.counts` are made of these.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dispatcher.storage.dynamodb import translated

__all__ = [
    "MAX_CALLS_PER_PAGE",
    "MAX_COUNT_PAGES",
    "BadPageTokenError",
    "BoundedPages",
    "Filter",
    "Page",
    "all_pages",
    "filter_expression",
    "matches",
    "read_page",
]

#: DynamoDB calls one page view may make while a filter throws items away: a page view's
#: cost stays bounded, and the page says where to go on.
MAX_CALLS_PER_PAGE = 10
#: Pages (1 MB each) a count reads before it says "at least".
MAX_COUNT_PAGES = 20

#: ``(attribute, operator, value)``: a comparison (``=``, ``>=``, ...), ``contains`` (part of
#: a string) or ``absent`` (no such attribute; the value is ignored).
Filter = tuple[str, str, str]


class BadPageTokenError(ValueError):
    """A page token that this module did not make (edited, or from another list)."""


@dataclass(frozen=True)
class Page:
    """One page of items, the token of the next one, and how it was read (for the reader:
    an index Query costs what it returns, a Scan what the table holds)."""

    items: list[dict[str, Any]]
    next_token: str | None
    source: str


def read_page(
    call: Callable[..., Any],
    request: dict[str, Any],
    filters: list[Filter],
    key_values: dict[str, str],
    token: str | None,
    limit: int,
    *,
    source: str,
    key: tuple[str, ...],
) -> Page:
    """Up to ``limit`` items from ``call`` (Query or Scan), filtered; the next page's token is
    the last item's key, so a page that stops inside a DynamoDB page loses nothing."""
    request = {**request, "Limit": limit}
    expression, filter_names, filter_values = filter_expression(filters)
    names = {
        "#status": "status",
        "#id": "id",
        "#sent_at": "sent_at",
        "#recipient": "recipient",
        **filter_names,
    }
    values = {name: {"S": value} for name, value in key_values.items()} | filter_values
    if expression:
        request["FilterExpression"] = expression
    used = " ".join(str(request.get(k, "")) for k in ("KeyConditionExpression", "FilterExpression"))
    request["ExpressionAttributeNames"] = {n: a for n, a in names.items() if n in used}
    if values:
        request["ExpressionAttributeValues"] = values
    if not request["ExpressionAttributeNames"]:
        del request["ExpressionAttributeNames"]
    start = _decode_token(token, key) if token else None
    items: list[dict[str, Any]] = []
    for _ in range(MAX_CALLS_PER_PAGE):
        with translated():
            page = call(**request, **({"ExclusiveStartKey": start} if start else {}))
        found = page.get("Items", [])
        for position, item in enumerate(found):
            items.append(item)
            if len(items) == limit:
                more = position < len(found) - 1 or "LastEvaluatedKey" in page
                last = {name: item[name] for name in key if name in item}
                return Page(items, _encode_token(last) if more else None, source)
        start = page.get("LastEvaluatedKey")
        if not start:
            return Page(items, None, source)
    return Page(items, _encode_token(start) if start else None, source)


def all_pages(call: Callable[..., Any], **request: Any) -> Iterator[dict[str, Any]]:
    """Every DynamoDB page of a Query or Scan, errors translated."""
    start = None
    while True:
        with translated():
            page = call(**request, **({"ExclusiveStartKey": start} if start else {}))
        yield page
        start = page.get("LastEvaluatedKey")
        if not start:
            return


class BoundedPages:
    """At most :data:`MAX_COUNT_PAGES` of a Query's or Scan's pages; once read, ``capped``
    says whether the table had more (the counts made from them are then lower bounds)."""

    def __init__(self, call: Callable[..., Any], **request: Any) -> None:
        self._pages = all_pages(call, **request)
        self.capped = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for number, page in enumerate(self._pages, start=1):
            yield page
            if number == MAX_COUNT_PAGES and "LastEvaluatedKey" in page:
                self.capped = True
                return


def filter_expression(filters: list[Filter]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A FilterExpression of conditions that must all hold, with its names and values."""
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for index, (attribute, operator, value) in enumerate(filters):
        name, placeholder = f"#f{index}", f":f{index}"
        names[name] = attribute
        if operator == "absent":
            parts.append(f"attribute_not_exists({name})")
            continue
        values[placeholder] = {"S": value}
        parts.append(
            f"contains({name}, {placeholder})"
            if operator == "contains"
            else f"{name} {operator} {placeholder}"
        )
    return " AND ".join(parts), names, values


def matches(item: Mapping[str, Any], filters: list[Filter]) -> bool:
    """The same filters, applied to an item already read."""
    for attribute, operator, value in filters:
        actual = item.get(attribute, {}).get("S")
        if operator == "absent":
            if attribute in item:
                return False
        elif actual is None or (value not in actual if operator == "contains" else actual != value):
            return False
    return True


def _encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def _decode_token(token: str, names: tuple[str, ...]) -> dict[str, Any]:
    """A page token back into an ExclusiveStartKey: string attributes of ``names`` only."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise BadPageTokenError("this page token is not one the console made") from None
    if not (
        isinstance(key, dict)
        and key
        and set(key) <= set(names)
        and all(
            isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str)
            for v in key.values()
        )
    ):
        raise BadPageTokenError("this page token does not belong to this list")
    return key
