"""An adapter onto moto's internals: transactions that save only the items they touch.

Why it exists: moto 5.2's ``DynamoDBBackend.transact_write_items`` deep-copies every table a
transaction names, all items and the stream's records with them, so that it can roll back.
The dispatcher's history-and-delete transaction names the history table, so each send cost
a copy of the whole history, and a local stack slowed down as it ran (``make bench`` fell
well below the provider's rate after a few thousand mails). moto has no setting or hook for
this, and its ``ThreadedMotoServer`` no place to serialise requests either, so this is one
of the patches the project keeps (with :mod:`.moto_expressions` and :mod:`.moto_retention`):
small, pinned to the moto version it was written against (``pyproject.toml`` pins moto
exactly), and checked by ``tests/functional/test_moto_adapter.py``, which fails when an
upgrade changes what it relies on.

What it relies on: requests are served one at a time (:mod:`.dynamodb_server` serialises
them, as DynamoDB applies each request atomically), so a transaction only needs the items it
touches saved for rollback; and moto's method reaches ``copy.deepcopy`` through the module
global ``moto.dynamodb.models.copy``.
"""

from __future__ import annotations

import copy
from typing import Any

from dispatcher.local.dynamodb.moto_pin import MOTO_VERSION, is_replaced, replace_method

__all__ = ["MOTO_VERSION", "install", "installed"]

_MARK = "_saves_touched_items_only"


def installed() -> bool:
    from moto.dynamodb import models

    return is_replaced(models.DynamoDBBackend, "transact_write_items", _MARK)


def install() -> None:
    """Make moto's transactions save and restore only the items they touch; idempotent.

    Raises
    ------
    RuntimeError
        If the installed moto is not :data:`MOTO_VERSION`: a silently wrong rollback is
        worse than a slow one.
    """
    from moto.dynamodb import models

    if installed():
        return
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = [_save(self, entry) for entry in transact_items]
        models.copy = _TablesAsIs()  # type: ignore[attr-defined,assignment]
        try:
            original(self, transact_items)
        except Exception:
            for slot in reversed(saved):
                if slot is not None:
                    _restore(*slot)
            raise
        finally:
            models.copy = copy  # type: ignore[attr-defined]

    replace_method(models.DynamoDBBackend, "transact_write_items", transact_write_items, _MARK)


class _TablesAsIs:
    """Stands in for the ``copy`` module inside moto's method: tables are not copied (their
    touched items were saved instead); anything else is."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _save(backend: Any, entry: dict[str, Any]) -> tuple[Any, Any, Any, Any] | None:
    """The item one transaction entry touches, as it is now (None: nothing to save)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    _, op = next(iter(entry.items()))
    table = backend.tables.get(op.get("TableName"))
    key = op.get("Key") or op.get("Item")
    if table is None or not key or table.hash_key_attr not in key:
        return None
    hash_value = DynamoType(key[table.hash_key_attr])
    if table.has_range_key:
        range_value = DynamoType(key[table.range_key_attr])
        current = table.items.get(hash_value, {}).get(range_value)
    else:
        range_value = None
        current = table.items.get(hash_value)
    return table, hash_value, range_value, copy.deepcopy(current)


def _restore(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
    items = table.items[hash_value] if table.has_range_key else table.items
    slot = range_value if table.has_range_key else hash_value
    if item is None:
        items.pop(slot, None)
    else:
        items[slot] = item
