"""What operators do with the queue: look rows up, list them, insert, re-fire and cancel.

The CLI and the console share this; the Lambda functions never need it, so it is left out of
their package. Writes go through the same conditions as the function's own
(:meth:`Store.refire <dispatcher.storage.store.Store.refire>` is the one re-fire), and every
DynamoDB failure through :func:`~dispatcher.storage.dynamodb.translated`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from dispatcher.model.row import REQUEST_ATTRIBUTES, AttributeValue, Row
from dispatcher.ops.counts import QueueCounts, SentCounts, queue_counts, sent_since
from dispatcher.ops.reads import (
    BadPageTokenError,
    Filter,
    Page,
    all_pages,
    filter_expression,
    matches,
    read_page,
)
from dispatcher.recipients.suppression import Suppression, SuppressionList, normalise
from dispatcher.reputation.guard import ReputationGuard
from dispatcher.storage.dynamodb import BATCH_GET_LIMIT, StoreError, conditionally, translated
from dispatcher.storage.store import (
    STAMPED_INDEX,
    WAITING_INDEX,
    Store,
    as_read,
    row_key,
    unchanged,
)
from dispatcher.support.clock import iso_utc
from dispatcher.templates.library import TemplateLibrary

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
LISTABLE_STATUSES = ("failed", "deferred", "paused", "scheduled", "pending")


class RowExistsError(StoreError):
    """A row with this id is already in the send table."""


#: The history table's index of mail by its `to` address (template.yaml).
RECIPIENT_INDEX = "by-recipient"


class Admin:
    """Operator queries and writes over a :class:`~dispatcher.storage.store.Store`'s tables."""

    def __init__(
        self,
        store: Store,
        suppressions: SuppressionList | None = None,
        templates: TemplateLibrary | None = None,
        guard: ReputationGuard | None = None,
    ) -> None:
        self.store = store
        self.suppressions = suppressions
        self.templates = templates
        self.guard = guard
        self._client = store.client

    def suppression(self, address: str) -> Suppression | None:
        """Why ``address`` is suppressed; None if it is not (or the stack keeps no list)."""
        if self.suppressions is None:
            return None
        return self.suppressions.find([address]).get(normalise(address))

    def get_row(self, row_id: str) -> Row | None:
        return self.store.get_row(row_id)

    def history(self, row_id: str, *, since: str | None = None) -> list[dict[str, Any]]:
        """Every history item of one row id (sent at or after ``since``), oldest first."""
        return list(self._query_history("id", row_id, since))

    def history_to(self, address: str, *, since: str | None = None) -> Iterator[dict[str, Any]]:
        """Every mail sent to ``address`` (as its ``to``), newest first: one Query of the
        history's ``by-recipient`` index, page by page."""
        return self._query_history(
            "recipient",
            normalise(address),
            since,
            IndexName=RECIPIENT_INDEX,
            ScanIndexForward=False,
        )

    def _query_history(
        self, name: str, value: str, since: str | None, **extra: Any
    ) -> Iterator[dict[str, Any]]:
        """The history items whose key ``name`` is ``value`` (sent at or after ``since``),
        page by page: of the table, or of one of its indexes (``extra``)."""
        key = "#k = :k"
        values: dict[str, Any] = {":k": {"S": value}}
        names = {"#k": name}
        if since:
            key += " AND #sent_at >= :since"
            values[":since"] = {"S": since}
            names["#sent_at"] = "sent_at"
        paginator = self._client.get_paginator("query")
        with translated():
            for page in paginator.paginate(
                TableName=self.store.history_table,
                KeyConditionExpression=key,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                **extra,
            ):
                yield from page.get("Items", [])

    def scan_rows_to(self, address: str) -> Iterator[dict[str, Any]]:
        """Rows of the send table whose ``to`` is ``address`` in any case: a paginated Scan
        (no index lists rows by recipient)."""
        wanted = normalise(address)
        for item in self._scan(self.store.send_table, {"to": ("contains", None)}):
            to = item.get("to", {}).get("S")
            if isinstance(to, str) and normalise(to) == wanted:
                yield item

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
        as it was read (:func:`~dispatcher.storage.store.unchanged`); False if it changed or went
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
        filters: list[Filter] = []
        if error_kind:
            filters.append(("error_kind", "=", error_kind))
        if recipient:
            filters.append(("to", "contains", recipient))
        query: dict[str, Any] = {"TableName": self.store.send_table}
        if status in ("failed", "deferred", "paused"):
            query.update(
                IndexName=STAMPED_INDEX,
                KeyConditionExpression="#status = :status",
                ScanIndexForward=False,
            )
            return read_page(
                self._client.query, query, filters, {":status": status}, token, limit,
                source=f"Query of the index {STAMPED_INDEX}, newest first",
                key=("id", "status", "failed_at"),
            )  # fmt: skip
        if status == "scheduled":
            query.update(IndexName=WAITING_INDEX, KeyConditionExpression="#status = :status")
            # The index holds keys only: filter and fill in from the rows themselves.
            keys = read_page(
                self._client.query, query, [], {":status": status}, token, limit,
                source=f"Query of the index {WAITING_INDEX}, soonest first",
                key=("id", "status", "retry_at"),
            )  # fmt: skip
            rows = [r.image for r in self._get_rows([i["id"]["S"] for i in keys.items])]
            kept = [dict(r) for r in rows if matches(r, filters)]
            return Page(kept, keys.next_token, keys.source)
        if status == "pending":
            filters.append(("status", "absent", ""))
        return read_page(
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
        """One page of the history: one id's items, or one whole address's, from a Query
        (newest first); anyone's, or part of an address, from a Scan of the history table;
        ``since``/``until`` bound ``sent_at``."""
        if row_id is None and recipient and "@" in recipient:
            return self._page_to(recipient, since, until, token, limit)
        filters: list[Filter] = []
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
            condition, values = _sent_between("#id = :id", {":id": row_id}, since, until)
            query.update(KeyConditionExpression=condition, ScanIndexForward=False)
            return read_page(
                self._client.query, query, filters, values, token, limit,
                source="Query of the history by id, newest first", key=key,
            )  # fmt: skip
        return read_page(
            self._client.scan, query, filters, {}, token, limit,
            source="Scan of the history table (no index orders it by time), in table order",
            key=key,
        )  # fmt: skip

    def _page_to(
        self, address: str, since: str | None, until: str | None, token: str | None, limit: int
    ) -> Page:
        condition, values = _sent_between(
            "#recipient = :recipient", {":recipient": normalise(address)}, since, until
        )
        query: dict[str, Any] = {
            "TableName": self.store.history_table,
            "IndexName": RECIPIENT_INDEX,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
        }
        return read_page(
            self._client.query, query, [], values, token, limit,
            source="Query of the history by recipient, newest first",
            key=("recipient", "sent_at", "id"),
        )  # fmt: skip

    def counts(self) -> QueueCounts:
        """The send table by status (:func:`~dispatcher.ops.counts.queue_counts`)."""
        return queue_counts(self.store)

    def sent_since(
        self, windows: Mapping[str, datetime | tuple[datetime, datetime]]
    ) -> dict[str, SentCounts]:
        """Mail sent in each window, and what became of it (:mod:`~dispatcher.ops.counts`)."""
        return sent_since(self.store, windows)

    def _get_rows(self, ids: list[str]) -> Iterator[Row]:
        """Rows by id, in the order given; rows gone meanwhile are left out."""
        found = self.store.get_rows(ids)
        return (found[i] for i in ids if i in found)

    def _scan(
        self, table: str, filters: dict[str, tuple[str, str | None]]
    ) -> Iterator[dict[str, Any]]:
        """A paginated Scan, filtered on ``attribute: (operator, value)`` (None: no filter)."""
        kwargs: dict[str, Any] = {"TableName": table}
        expression, names, values = filter_expression(
            [(name, op, value) for name, (op, value) in filters.items() if value is not None]
        )
        if expression:
            kwargs.update(
                FilterExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        for page in all_pages(self._client.scan, **kwargs):
            yield from page.get("Items", [])


def _sent_between(
    condition: str, values: dict[str, str], since: str | None, until: str | None
) -> tuple[str, dict[str, str]]:
    """A key condition bounded on ``sent_at`` (a sort key takes one condition at most)."""
    values = dict(values)
    if since and until:
        values.update({":since": since, ":until": until})
        return condition + " AND #sent_at BETWEEN :since AND :until", values
    if since:
        values[":since"] = since
        return condition + " AND #sent_at >= :since", values
    if until:
        values[":until"] = until
        return condition + " AND #sent_at < :until", values
    return condition, values
