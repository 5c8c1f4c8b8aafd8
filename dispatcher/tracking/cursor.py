"""Where the mail-log poll stands, kept between runs and containers.

The poll reads the same hours of blastengine's log again and again (a ``RETRY`` becomes
``SENT`` in place), so what it already applied must be skipped without a history read. A
container remembers that for itself; a cold one would read the history once per result of
the whole window, which at a busy account's volume outlasts a sweep. The cursor says it for
every container: results last changed before ``seen_until`` were applied by a pass that read
the window to its end, and ``anchor`` is where an unfinished pass stopped. It is one item of
the rate-limit table (``mail-log:blastengine``), beside the account's limit it takes its
requests from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher.storage.dynamodb import translated
from dispatcher.support.clock import iso_utc, parse_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["CURSOR_KEY", "LogCursor", "Position"]

#: The cursor's item in the rate-limit table.
CURSOR_KEY = "mail-log:blastengine"


@dataclass(frozen=True)
class Position:
    seen_until: datetime | None = None  # results changed before this need no history read
    anchor: str | None = None  # where an unfinished pass stopped
    pass_started: datetime | None = None  # when the pass under way began


class LogCursor:
    def __init__(self, client: DynamoDBClient, table: str, key: str = CURSOR_KEY) -> None:
        self._client = client
        self._table = table
        self._key = {"name": {"S": key}}

    def read(self) -> Position:
        with translated():
            item = self._client.get_item(TableName=self._table, Key=self._key).get("Item", {})
        anchor = item.get("anchor", {}).get("S")
        return Position(
            parse_iso(item.get("seen_until", {}).get("S")),
            anchor or None,
            parse_iso(item.get("pass_started", {}).get("S")),
        )

    def save(self, position: Position) -> None:
        values: dict[str, Any] = {":a": {"S": position.anchor or ""}}
        sets = ["anchor = :a"]
        for name in ("seen_until", "pass_started"):
            moment = getattr(position, name)
            if moment is not None:
                values[f":{name}"] = {"S": iso_utc(moment)}
                sets.append(f"{name} = :{name}")
        with translated():
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET " + ", ".join(sets),
                ExpressionAttributeValues=values,
            )
