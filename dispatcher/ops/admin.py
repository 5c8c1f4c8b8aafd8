"""What operators do with the queue: look rows up, list them, insert, re-fire and cancel.

The CLI and the console share this; the Lambda functions never need it, so it is left out of
their package. Writes go through the same conditions as the function's own
(:meth:`Store.refire <dispatcher.store.Store.refire>` is the one re-fire), and every
DynamoDB failure through :func:`~dispatcher.store.translated`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dispatcher.clock import iso_utc
from dispatcher.row import REQUEST_ATTRIBUTES, AttributeValue, Row
from dispatcher.store import (
    BATCH_GET_LIMIT,
    STAMPED_INDEX,
    WAITING_INDEX,
    Store,
    StoreError,
    as_read,
    batch_get,
    conditionally,
    row_key,
    unchanged,
)
from dispatcher.store import translated as _translated

__all__ = [
    "LISTABLE_STATUSES",
    "Admin",
    "BadPageTokenError",
    "Page",
    "QueueCounts",
    "RowExistsError",
    "SentCounts",
]

#: What a list of the send table can be narrowed to; "pending" is a row with no status yet.
LISTABLE_STATUSES = ("failed", "deferred", "scheduled", "pending")
#: DynamoDB calls one page view may make while a filter throws items away: a page view's
#: cost stays bounded, and the page says where to go on.
MAX_CALLS_PER_PAGE = 10
#: Pages (1 MB each) a count reads before it says "at least".
MAX_COUNT_PAGES = 20


class RowExistsError(StoreError):
    """A row with this id is already in the send table."""


class BadPageTokenError(ValueError):
    """A page token that this module did not make (edited, or from another list)."""


@dataclass(frozen=True)
class Page:
    """One page of items, the token of the next one, and how it was read (for the reader:
    an index Query costs what it returns, a Scan what the table holds)."""

    items: list[dict[str, Any]]
    next_token: str | None
    source: str


@dataclass(frozen=True)
class QueueCounts:
    """What is in the send table, by status; failed rows by ``error_kind`` too."""

    failed: Counter[str] = field(default_factory=Counter)
    deferred: int = 0
    scheduled: int = 0
    pending: int = 0
    #: The statuses whose count stopped at :data:`MAX_COUNT_PAGES` (there are at least so many).
    at_least: frozenset[str] = frozenset()
    oldest_failed_at: str | None = None
    oldest_deferred_at: str | None = None
    #: ``failed_at`` of each failed and deferred row read (the console's chart).
    stamped_at: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SentCounts:
    """History items sent since a time, and how many of them bounced."""

    since: str
    sent: int
    bounced: int
    #: True if the count stopped at :data:`MAX_COUNT_PAGES` of the history table.
    capped: bool = False
    #: Each counted item's ``sent_at`` (the console's chart).
    times: tuple[str, ...] = ()

    @property
    def bounce_share(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0


class Admin:
    """Operator queries and writes over a :class:`~dispatcher.store.Store`'s tables."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._client = store.client

    def get_row(self, row_id: str) -> Row | None:
        return self.store.get_row(row_id)

    def history(self, row_id: str, *, since: str | None = None) -> list[dict[str, Any]]:
        """Every history item of one row id (sent at or after ``since``), oldest first."""
        key = "#id = :id"
        values: dict[str, Any] = {":id": {"S": row_id}}
        names = {"#id": "id"}
        if since:
            key += " AND #sent_at >= :since"
            values[":since"] = {"S": since}
            names["#sent_at"] = "sent_at"
        items: list[dict[str, Any]] = []
        paginator = self._client.get_paginator("query")
        with _translated():
            for page in paginator.paginate(
                TableName=self.store.history_table,
                KeyConditionExpression=key,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ):
                items.extend(page.get("Items", []))
        return items

    def scan_history(self, *, since: str | None = None) -> Iterator[dict[str, Any]]:
        """History items of every row (sent at or after ``since``): a paginated Scan."""
        return self._scan(self.store.history_table, {"sent_at": (">=", since)})

    def put_row(self, item: dict[str, Any], *, overwrite: bool = False) -> None:
        """Insert a send row; an existing id is refused unless ``overwrite`` (seeding)."""
        condition: dict[str, Any] = (
            {}
            if overwrite
            else {
                "ConditionExpression": "attribute_not_exists(#id)",
                "ExpressionAttributeNames": {"#id": "id"},
            }
        )
        if not conditionally(
            self._client.put_item, TableName=self.store.send_table, Item=item, **condition
        ):
            raise RowExistsError(f"a row with id {item['id']['S']!r} already exists")

    def waiting_rows(self, status: str) -> Iterator[Row]:
        """Every row with ``status`` deferred or scheduled, in ``retry_at`` order: the
        sparse index (keys only) gives the ids, BatchGetItem the rows, 100 at a time."""
        ids: list[str] = []
        for row in self.store.due_rows(status, "9999"):
            ids.append(row.id)
            if len(ids) == BATCH_GET_LIMIT:
                yield from self._get_rows(ids)
                ids = []
        if ids:
            yield from self._get_rows(ids)

    def stamped_ids(self, status: str, *, error_kind: str | None = None) -> Iterator[list[str]]:
        """The ids of every ``failed`` or ``deferred`` row (of ``error_kind``), newest first, a
        page (at most 100) at a time: the sparse index alone, no row read."""
        token: str | None = None
        while True:
            page = self.page_rows(
                status=status, error_kind=error_kind, token=token, limit=BATCH_GET_LIMIT
            )
            if page.items:  # a filtered page may hold none, and still lead on
                yield [item["id"]["S"] for item in page.items]
            token = page.next_token
            if token is None:
                return

    def stamped_rows(self, status: str, *, error_kind: str | None = None) -> Iterator[Row]:
        """Every ``failed`` or ``deferred`` row (of ``error_kind``), newest first, read whole
        (the index holds a few attributes), a page at a time."""
        for ids in self.stamped_ids(status, error_kind=error_kind):
            yield from self._get_rows(ids)

    def scan_rows(
        self, *, status: str | None = None, error_kind: str | None = None
    ) -> Iterator[Row]:
        """Rows of the send table, optionally filtered: a paginated Scan."""
        items = self._scan(
            self.store.send_table, {"status": ("=", status), "error_kind": ("=", error_kind)}
        )
        return (row for row in map(Row.from_item, items) if row is not None)

    def refire(self, row: Row) -> bool:
        """Re-send a row as it was read; False if it changed or went away since."""
        return self.store.refire(row, now=iso_utc(datetime.now(UTC)))

    def cancel(self, row: Row) -> bool:
        """Delete a row as it was read (same ``status`` and ``retry_at``); False if it changed
        or went away since: sent, re-stamped by the dispatcher, or edited."""
        return conditionally(
            self._client.delete_item,
            TableName=self.store.send_table,
            Key=row_key(row.id),
            **as_read(row),
        )

    def edit(self, row: Row, request: dict[str, AttributeValue]) -> bool:
        """Replace the row's request attributes with ``request``, if the row is still exactly
        as it was read (:func:`~dispatcher.store.unchanged`); False if it changed or went
        away. Bookkeeping stays: the changed request attributes are what makes the stream's
        MODIFY a send (``DESIGN.md``, triage)."""
        unknown = set(request) - REQUEST_ATTRIBUTES
        if unknown:
            raise ValueError(f"not request attributes: {', '.join(sorted(unknown))}")
        condition = unchanged(row)
        names = condition["ExpressionAttributeNames"]
        values = condition.setdefault("ExpressionAttributeValues", {})
        sets, removes = [], []
        for index, name in enumerate(sorted(REQUEST_ATTRIBUTES)):
            if name in request:
                names[f"#e{index}"] = name
                values[f":e{index}"] = request[name]
                sets.append(f"#e{index} = :e{index}")
            elif name in row.image:
                names[f"#e{index}"] = name
                removes.append(f"#e{index}")
        update = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets) if sets else "",
                "REMOVE " + ", ".join(removes) if removes else "",
            )
            if part
        )
        if not update:
            raise ValueError("an edit must leave the row some request attributes")
        return conditionally(
            self._client.update_item,
            TableName=self.store.send_table,
            Key=row_key(row.id),
            UpdateExpression=update,
            **condition,
        )

    def page_rows(
        self,
        *,
        status: str | None = None,
        error_kind: str | None = None,
        recipient: str | None = None,
        token: str | None = None,
        limit: int = 50,
    ) -> Page:
        """One page of the send table: failed and deferred rows newest first from their sparse
        index, scheduled ones soonest first from theirs, pending rows (no status) and all rows
        from a Scan, the one list no index serves. ``recipient`` matches part of ``to``."""
        if status is not None and status not in LISTABLE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(LISTABLE_STATUSES)}")
        filters: list[tuple[str, str, str]] = []
        if error_kind:
            filters.append(("error_kind", "=", error_kind))
        if recipient:
            filters.append(("to", "contains", recipient))
        query: dict[str, Any] = {"TableName": self.store.send_table}
        if status in ("failed", "deferred"):
            query.update(
                IndexName=STAMPED_INDEX,
                KeyConditionExpression="#status = :status",
                ScanIndexForward=False,
            )
            return self._page(
                self._client.query, query, filters, {":status": status}, token, limit,
                source=f"Query of the index {STAMPED_INDEX}, newest first",
                key=("id", "status", "failed_at"),
            )  # fmt: skip
        if status == "scheduled":
            query.update(IndexName=WAITING_INDEX, KeyConditionExpression="#status = :status")
            # The index holds keys only: filter and fill in from the rows themselves.
            keys = self._page(
                self._client.query, query, [], {":status": status}, token, limit,
                source=f"Query of the index {WAITING_INDEX}, soonest first",
                key=("id", "status", "retry_at"),
            )  # fmt: skip
            rows = [r.image for r in self._get_rows([i["id"]["S"] for i in keys.items])]
            kept = [dict(r) for r in rows if _matches(r, filters)]
            return Page(kept, keys.next_token, keys.source)
        if status == "pending":
            filters.append(("status", "absent", ""))
        return self._page(
            self._client.scan, query, filters, {}, token, limit,
            source="Scan of the send table (no index holds every row), in table order",
            key=("id",),
        )  # fmt: skip

    def page_history(
        self,
        *,
        row_id: str | None = None,
        recipient: str | None = None,
        since: str | None = None,
        until: str | None = None,
        token: str | None = None,
        limit: int = 50,
    ) -> Page:
        """One page of the history: one id's items from a Query (newest first), anyone's from
        a Scan of the history table; ``since``/``until`` bound ``sent_at``."""
        filters: list[tuple[str, str, str]] = []
        if recipient:
            filters.append(("to", "contains", recipient))
        if row_id is None:
            if since:
                filters.append(("sent_at", ">=", since))
            if until:
                filters.append(("sent_at", "<", until))
        query: dict[str, Any] = {"TableName": self.store.history_table}
        key = ("id", "sent_at")
        if row_id is not None:
            condition, values = "#id = :id", {":id": row_id}
            if since and until:
                condition += " AND #sent_at BETWEEN :since AND :until"
                values.update({":since": since, ":until": until})
            elif since:
                condition += " AND #sent_at >= :since"
                values[":since"] = since
            elif until:
                condition += " AND #sent_at < :until"
                values[":until"] = until
            query.update(KeyConditionExpression=condition, ScanIndexForward=False)
            return self._page(
                self._client.query, query, filters, values, token, limit,
                source="Query of the history by id, newest first", key=key,
            )  # fmt: skip
        return self._page(
            self._client.scan, query, filters, {}, token, limit,
            source="Scan of the history table (no index orders it by time), in table order",
            key=key,
        )  # fmt: skip

    def counts(self) -> QueueCounts:
        """The send table by status: failed and deferred rows from their index (which carries
        ``error_kind``), scheduled ones counted on theirs, pending ones by a counting Scan (a
        healthy queue has few). Each count stops at :data:`MAX_COUNT_PAGES` pages and is then
        a lower bound, named in ``at_least``: an overview that refreshes itself must not
        read a table without end."""
        failed: Counter[str] = Counter()
        deferred = 0
        at_least: set[str] = set()
        oldest: dict[str, str | None] = {"failed": None, "deferred": None}
        stamped: dict[str, list[str]] = {"failed": [], "deferred": []}
        for status in ("failed", "deferred"):
            pages = self._bounded(
                self._client.query,
                TableName=self.store.send_table,
                IndexName=STAMPED_INDEX,
                KeyConditionExpression="#status = :status",
                ExpressionAttributeNames={"#status": "status", "#kind": "error_kind"},
                ExpressionAttributeValues={":status": {"S": status}},
                ProjectionExpression="#kind, failed_at",
            )
            for page in pages:
                for item in page.get("Items", []):
                    at = item.get("failed_at", {}).get("S")
                    if oldest[status] is None:  # ascending failed_at: the first is the oldest
                        oldest[status] = at
                    if at:
                        stamped[status].append(at)
                    if status == "failed":
                        failed[item.get("error_kind", {}).get("S", "unknown")] += 1
                    else:
                        deferred += 1
            if pages.capped:
                at_least.add(status)
        scheduled, capped = self._count(
            self._client.query,
            TableName=self.store.send_table,
            IndexName=WAITING_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": {"S": "scheduled"}},
            Select="COUNT",
        )
        if capped:
            at_least.add("scheduled")
        pending, capped = self._count(
            self._client.scan,
            TableName=self.store.send_table,
            FilterExpression="attribute_not_exists(#status)",
            ExpressionAttributeNames={"#status": "status"},
            Select="COUNT",
        )
        if capped:
            at_least.add("pending")
        return QueueCounts(
            failed, deferred, scheduled, pending, frozenset(at_least),
            oldest["failed"], oldest["deferred"],
            {status: tuple(times) for status, times in stamped.items()},
        )  # fmt: skip

    def sent_since(self, windows: dict[str, datetime]) -> dict[str, SentCounts]:
        """For each window's start, the history items sent at or after it and how many
        bounced: one filtered Scan of the history table from the earliest start (stopped at
        :data:`MAX_COUNT_PAGES`), so callers should cache it."""
        stamps = {name: iso_utc(start) for name, start in windows.items()}
        sent: Counter[str] = Counter()
        bounced: Counter[str] = Counter()
        times: dict[str, list[str]] = {name: [] for name in stamps}
        pages = self._bounded(
            self._client.scan,
            TableName=self.store.history_table,
            FilterExpression="#sent_at >= :since",
            ProjectionExpression="#sent_at, #bounce",
            ExpressionAttributeNames={"#sent_at": "sent_at", "#bounce": "bounce_type"},
            ExpressionAttributeValues={":since": {"S": min(stamps.values())}},
        )
        for page in pages:
            for item in page.get("Items", []):
                when = item.get("sent_at", {}).get("S", "")
                for name, stamp in stamps.items():
                    if when >= stamp:
                        sent[name] += 1
                        bounced[name] += "bounce_type" in item
                        times[name].append(when)
        return {
            name: SentCounts(stamp, sent[name], bounced[name], pages.capped, tuple(times[name]))
            for name, stamp in stamps.items()
        }

    def _page(
        self,
        call: Callable[..., Any],
        request: dict[str, Any],
        filters: list[tuple[str, str, str]],
        key_values: dict[str, str],
        token: str | None,
        limit: int,
        *,
        source: str,
        key: tuple[str, ...],
    ) -> Page:
        """Up to ``limit`` items from ``call`` (Query or Scan), filtered on ``(attribute,
        operator, value)``; the next page's token is the last item's key, so a page that
        stops inside a DynamoDB page loses nothing."""
        request = {**request, "Limit": limit}
        expression, filter_names, filter_values = _filter_expression(filters)
        names = {"#status": "status", "#id": "id", "#sent_at": "sent_at", **filter_names}
        values = {name: {"S": value} for name, value in key_values.items()} | filter_values
        if expression:
            request["FilterExpression"] = expression
        used = " ".join(
            str(request.get(k, "")) for k in ("KeyConditionExpression", "FilterExpression")
        )
        request["ExpressionAttributeNames"] = {n: a for n, a in names.items() if n in used}
        if values:
            request["ExpressionAttributeValues"] = values
        if not request["ExpressionAttributeNames"]:
            del request["ExpressionAttributeNames"]
        start = _decode_token(token, key) if token else None
        items: list[dict[str, Any]] = []
        for _ in range(MAX_CALLS_PER_PAGE):
            with _translated():
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

    def _pages(self, call: Callable[..., Any], **request: Any) -> Iterator[dict[str, Any]]:
        start = None
        while True:
            with _translated():
                page = call(**request, **({"ExclusiveStartKey": start} if start else {}))
            yield page
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _bounded(self, call: Callable[..., Any], **request: Any) -> _BoundedPages:
        return _BoundedPages(self._pages(call, **request))

    def _count(self, call: Callable[..., Any], **request: Any) -> tuple[int, bool]:
        """A counting (``Select="COUNT"``) call's total, and whether it stopped short."""
        pages = self._bounded(call, **request)
        return sum(page.get("Count", 0) for page in pages), pages.capped

    def _get_rows(self, ids: list[str]) -> Iterator[Row]:
        """Rows by id, in the order given; rows gone meanwhile are left out."""
        found: dict[str, Row] = {}
        for item in batch_get(self._client, self.store.send_table, [row_key(i) for i in ids]):
            row = Row.from_item(item)
            if row is not None:
                found[row.id] = row
        return (found[i] for i in ids if i in found)

    def _scan(
        self, table: str, filters: dict[str, tuple[str, str | None]]
    ) -> Iterator[dict[str, Any]]:
        """A paginated Scan, filtered on ``attribute: (operator, value)`` (None: no filter)."""
        kwargs: dict[str, Any] = {"TableName": table}
        expression, names, values = _filter_expression(
            [(name, op, value) for name, (op, value) in filters.items() if value is not None]
        )
        if expression:
            kwargs.update(
                FilterExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        for page in self._pages(self._client.scan, **kwargs):
            yield from page.get("Items", [])


class _BoundedPages:
    """At most :data:`MAX_COUNT_PAGES` of ``pages``; once read, ``capped`` says whether the
    table had more (the counts made from them are then lower bounds)."""

    def __init__(self, pages: Iterator[dict[str, Any]]) -> None:
        self._pages = pages
        self.capped = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for number, page in enumerate(self._pages, start=1):
            yield page
            if number == MAX_COUNT_PAGES and "LastEvaluatedKey" in page:
                self.capped = True
                return


def _filter_expression(
    filters: list[tuple[str, str, str]],
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A FilterExpression of ``(attribute, operator, value)`` conditions, all to hold, with its
    names and values; operators: a comparison (``=``, ``>=``, ...), ``contains`` (part of a
    string), ``absent`` (no such attribute; the value is ignored)."""
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


def _matches(item: Mapping[str, Any], filters: list[tuple[str, str, str]]) -> bool:
    """The page filters of :meth:`Admin.page_rows`, applied to an item already read."""
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
