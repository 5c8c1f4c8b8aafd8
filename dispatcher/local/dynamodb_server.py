"""A DynamoDB endpoint with streams on loopback: moto's server, one request at a time.

moto's backends are not thread-safe (a ``TransactWriteItems`` deep-copies tables that other
requests may be writing), while DynamoDB applies each request atomically. Serialising the
requests gives the local endpoint DynamoDB's per-request atomicity.

That deep copy is also why a long-running local stack slowed down: moto snapshots every
table a transaction touches, with all its items (and its stream's records), before each
transaction, so the dispatcher's history-and-delete cost grew with the history table. Since
requests are serialised here, a transaction only needs its own items saved for rollback:
:func:`_snapshot_touched_items_only` does that instead.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from dispatcher.local._server import BackgroundServer

__all__ = ["DynamoDBServer"]


class _TablesAsIs:
    """Stands in for the ``copy`` module inside moto's ``transact_write_items``: tables are
    not copied (their touched items are saved instead), anything else is."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _item_slot(table: Any, key: dict[str, Any]) -> tuple[Any, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.has_range_key else None
    return hash_value, range_value


def _snapshot_touched_items_only() -> None:
    """Make moto's transactions save and restore only the items they touch (see above)."""
    from moto.dynamodb import models

    backend_class = models.DynamoDBBackend
    original = backend_class.transact_write_items
    if getattr(original, "_touched_items_only", False):
        return

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Key") or op.get("Item")
            if table is None or not key or table.hash_key_attr not in key:
                continue
            hash_value, range_value = _item_slot(table, key)
            bucket = table.items.get(hash_value) if table.has_range_key else table.items
            current = (bucket or {}).get(range_value if table.has_range_key else hash_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(current)))
        models.copy = _TablesAsIs()  # type: ignore[attr-defined,assignment]
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                if table.has_range_key:
                    bucket = table.items[hash_value]
                    if item is None:
                        bucket.pop(range_value, None)
                    else:
                        bucket[range_value] = item
                elif item is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = item
            raise
        finally:
            models.copy = copy  # type: ignore[attr-defined]

    transact_write_items._touched_items_only = True  # type: ignore[attr-defined]
    backend_class.transact_write_items = transact_write_items  # type: ignore[method-assign]


class _OneAtATime:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class DynamoDBServer(BackgroundServer):
    """moto's DynamoDB and DynamoDB Streams on ``http://127.0.0.1:PORT``."""

    name = "dynamodb"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one line per DynamoDB call drowns the dispatcher's own logs

        _snapshot_touched_items_only()
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietHandler
        )

    @property
    def endpoint_url(self) -> str:
        host, port = self._host_port
        return f"http://{host}:{port}"
