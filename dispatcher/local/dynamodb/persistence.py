"""The local stack's tables on disk, so queued mail and history survive a restart.

moto keeps its tables in memory. The stack saves all three tables to one JSON file under its
state directory whenever the endpoint has taken a write since the last save (checked every
:data:`SAVE_INTERVAL_SECONDS`) and once more at a clean stop, and restores them at start. A
``kill -9`` loses at most the writes of the last interval.

Restoring must not send anything twice or anything a person has to decide on. So the send
table is filled in two steps: rows the dispatcher has dealt with (``failed``, ``deferred``,
``scheduled``, not re-fired since) go in before its stream is enabled, and produce no record;
rows whose send may have been under way (no status yet, or re-fired) go in after, and their
INSERT records send them, under the restored idempotency records: a mail that had been
accepted is recognised and only its bookkeeping finished.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dispatcher.local.dynamodb.tables import SEND_TABLE, create_tables, enable_streams
from dispatcher.model.row import Row

__all__ = ["SAVE_INTERVAL_SECONDS", "SNAPSHOT_FILE", "TableSnapshots"]

SNAPSHOT_FILE = "tables.json"
#: How often the stack looks for writes to save: what a kill -9 can lose at most.
SAVE_INTERVAL_SECONDS = 2.0
_FORMAT = 1
_BATCH_WRITE_LIMIT = 25


class TableSnapshots:
    """Saves and restores the stack's tables (logical id -> table name) through ``client``."""

    def __init__(self, path: Path, client: Any, names: Mapping[str, str]) -> None:
        self.path = path
        self._client = client
        self._names = dict(names)

    def create_and_restore(self) -> dict[str, str]:
        """Create the tables and load the last snapshot into them, if there is one.

        Returns each stream ARN by logical id, as :func:`create_tables` does.
        """
        saved = self._read()
        create_tables(self._client, self._names, streams=False)
        in_flight: list[dict[str, Any]] = []
        for logical_id, items in saved.items():
            table = self._names.get(logical_id)
            if table is None:
                continue
            if logical_id == SEND_TABLE:
                settled, in_flight = _split_settled(items)
                self._put_all(table, settled)
            else:
                self._put_all(table, items)
        streams = enable_streams(self._client, self._names)
        self._put_all(self._names[SEND_TABLE], in_flight)
        return streams

    def save(self) -> None:
        """Write every table to the file, atomically (a crash mid-save keeps the last one)."""
        tables = {
            logical_id: [_to_json(item) for item in self._scan(table)]
            for logical_id, table in self._names.items()
        }
        document = {"format": _FORMAT, "saved_at": time.time(), "tables": tables}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(document), encoding="utf-8")
        os.replace(partial, self.path)

    def discard(self) -> None:
        """Forget the snapshot: the next start is empty (``dispatcher dev --fresh``)."""
        self.path.unlink(missing_ok=True)

    def _read(self) -> dict[str, list[dict[str, Any]]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OSError(
                f"cannot restore the local tables from {self.path}: {exc}; "
                "move it away or start with --fresh"
            ) from None
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise OSError(f"{self.path} is not a table snapshot this version can read")
        return {k: [_from_json(i) for i in v] for k, v in document.get("tables", {}).items()}

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        for page in self._client.get_paginator("scan").paginate(TableName=table):
            yield from page.get("Items", [])

    def _put_all(self, table: str, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), _BATCH_WRITE_LIMIT):
            request: Any = {
                table: [
                    {"PutRequest": {"Item": i}} for i in items[start : start + _BATCH_WRITE_LIMIT]
                ]
            }
            while request:
                request = self._client.batch_write_item(RequestItems=request).get(
                    "UnprocessedItems"
                )


def _split_settled(items: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    settled: list[Any] = []
    in_flight: list[Any] = []
    for item in items:
        row = Row.from_item(item)
        (in_flight if row is None or row.in_flight else settled).append(item)
    return settled, in_flight


def _to_json(value: Any) -> Any:
    """A wire value with its binary payloads (B, BS) as base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any, tag: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _from_json(v, k) for k, v in value.items()}
    if tag == "B" and isinstance(value, str):
        return base64.b64decode(value)
    if tag == "BS" and isinstance(value, list):
        return [base64.b64decode(v) for v in value]
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value
