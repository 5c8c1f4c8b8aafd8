"""What operators do with the queue: look rows up, list them, insert, re-fire and cancel.

The CLI and the console share this; the Lambda functions never need it, so it is left out of
their package. Writes go through the same conditions as the function's own
(:meth:`Store.refire <dispatcher.store.Store.refire>` is the one re-fire), and every
DynamoDB failure through :func:`~dispatcher.store.translated`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dispatcher.clock import iso_utc
from dispatcher.row import Row
from dispatcher.store import (
    BATCH_GET_LIMIT,
    Store,
    StoreError,
    as_read,
    batch_get,
    conditionally,
    row_key,
)
from dispatcher.store import translated as _translated

__all__ = ["Admin", "RowExistsError"]


class RowExistsError(StoreError):
    """A row with this id is already in the send table."""


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
        used = {name: cmp for name, cmp in filters.items() if cmp[1] is not None}
        if used:
            kwargs.update(
                FilterExpression=" AND ".join(f"#{n} {op} :{n}" for n, (op, _) in used.items()),
                ExpressionAttributeNames={f"#{n}": n for n in used},
                ExpressionAttributeValues={f":{n}": {"S": v} for n, (_, v) in used.items()},
            )
        with _translated():
            for page in self._client.get_paginator("scan").paginate(**kwargs):
                yield from page.get("Items", [])
