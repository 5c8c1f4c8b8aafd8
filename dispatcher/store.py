"""The only module that talks to DynamoDB: the send table and the history table.

Every write is conditional on the row still holding the request attributes that were sent
(``DESIGN.md``, "Sending", steps 4 and 5). The row carries no hash of its own, so the
condition is built from the attributes themselves: each one the sent image had must still be
equal, and each one it lacked must still be absent.

``ClientError`` codes are translated in one place, :func:`_translate`: a failed condition
means :class:`RowChangedError` (someone edited or removed the row; leave it alone), anything
else means :class:`StoreUnavailableError`, which the handler reports as a batch item failure
so Lambda retries the record. The row is never lost either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from dispatcher.message import REQUEST_ATTRIBUTES, ErrorKind, Image, RowStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "LAST_ERROR_MAX_CHARS",
    "WAITING_INDEX",
    "FailureStamp",
    "HistoryEntry",
    "RowChangedError",
    "RowExistsError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "WaitingRow",
]

#: ``last_error`` is for people reading a console; a provider's whole answer is not.
LAST_ERROR_MAX_CHARS = 1000
#: The send table's sparse index of rows waiting for a time (``template.yaml``): only rows
#: carrying ``retry_at`` (deferred and scheduled ones) are in it.
WAITING_INDEX = "waiting-by-retry-at"
#: BatchGetItem's own limit on keys per request, and how often unprocessed keys are asked again.
BATCH_GET_LIMIT = 100
BATCH_GET_ATTEMPTS = 5


class StoreError(Exception):
    """A DynamoDB call did not do what was asked."""


class RowChangedError(StoreError):
    """The row no longer holds the content this write was conditioned on (edited or gone)."""


class StoreUnavailableError(StoreError):
    """DynamoDB throttled, timed out or failed; the record should be retried."""


class RowExistsError(StoreError):
    """A row with this id is already in the send table."""


@dataclass(frozen=True)
class WaitingRow:
    """A row the sparse index says is waiting: its key and the wait it was found with."""

    id: str
    status: str
    retry_at: str


@dataclass(frozen=True)
class HistoryEntry:
    """One sent mail, as kept in the history table."""

    id: str
    sent_at: str
    provider: str
    delivery_id: str | None
    to: str
    subject: str
    attempts: int
    content_hash: str
    expires_at: int
    cc_count: int = 0
    bcc_count: int = 0


@dataclass(frozen=True)
class FailureStamp:
    """The bookkeeping written onto a row that stays in the send table."""

    status: RowStatus
    attempts: int
    stamped_at: str
    last_error: str | None = None
    error_kind: ErrorKind | None = None
    http_status: int | None = None
    retry_at: str | None = None


class Store:
    """Reads and conditionally writes the send and history tables.

    Parameters
    ----------
    boto3_client:
        A low-level DynamoDB client; injected by tests and the local stack. By default one
        is created, following boto3's own ``AWS_ENDPOINT_URL`` and region settings.
    """

    def __init__(
        self,
        *,
        send_table: str,
        history_table: str,
        boto3_client: DynamoDBClient | None = None,
    ) -> None:
        self.send_table = send_table
        self.history_table = history_table
        self._client: DynamoDBClient = boto3_client or boto3.client("dynamodb")

    @property
    def client(self) -> DynamoDBClient:
        return self._client

    def get_row(self, row_id: str) -> dict[str, Any] | None:
        """The row as stored now (strongly consistent), or None if it is gone."""
        with _translate():
            response = self._client.get_item(
                TableName=self.send_table, Key=_key(row_id), ConsistentRead=True
            )
        item = response.get("Item")
        return dict(item) if item else None

    def record_sent(self, entry: HistoryEntry, sent_image: Image, *, replayed: bool) -> bool:
        """Move a sent row: write its history item and delete it, in one transaction.

        If the row changed while the mail was in flight (or is already gone), the history is
        written alone and the row kept: its own stream record sends the new content.
        ``replayed`` marks a send the idempotency store recognised as already done, which
        the history item counts in ``replays``.

        Returns True if the row was deleted, False if it was kept.
        """
        update = self._history_update(entry, replayed=replayed)
        condition = _ContentCondition(sent_image)
        try:
            with _translate():
                self._client.transact_write_items(
                    TransactItems=[
                        {"Update": update},  # type: ignore[typeddict-item]
                        {
                            "Delete": {
                                "TableName": self.send_table,
                                "Key": _key(entry.id),
                                # Closes the race with an edit made while the send was in
                                # flight: only the content that was sent may be deleted.
                                "ConditionExpression": condition.expression,
                                "ExpressionAttributeNames": condition.names,
                                "ExpressionAttributeValues": condition.values,
                            }
                        },
                    ]
                )
        except RowChangedError:
            with _translate():
                self._client.update_item(**update)
            return False
        return True

    def stamp(self, row_id: str, sent_image: Image, stamp: FailureStamp) -> bool:
        """Write why a row was not sent; False if the row changed or is gone meanwhile.

        Conditional on ``attribute_exists(id)`` (never resurrect a row deleted meanwhile) and
        on the content that was tried (a row edited in flight is left to its own MODIFY,
        not stamped with an error its new content never had).
        """
        condition = _ContentCondition(sent_image)
        values: dict[str, Any] = dict(condition.values)
        names: dict[str, str] = dict(condition.names)
        sets, removes = [], []
        fields: dict[str, Any] = {
            "status": {"S": stamp.status.value},
            "attempts": {"N": str(stamp.attempts)},
            "last_error": {"S": _clip(stamp.last_error)} if stamp.last_error else None,
            "error_kind": {"S": stamp.error_kind.value} if stamp.error_kind else None,
            "http_status": {"N": str(stamp.http_status)} if stamp.http_status else None,
            "failed_at": {"S": stamp.stamped_at} if stamp.error_kind else None,
            # Only rows waiting for a time carry retry_at: it keys the sweeper's sparse index.
            "retry_at": {"S": stamp.retry_at} if stamp.retry_at else None,
        }
        for index, (name, value) in enumerate(fields.items()):
            names[f"#b{index}"] = name
            if value is None:
                removes.append(f"#b{index}")
            else:
                values[f":b{index}"] = value
                sets.append(f"#b{index} = :b{index}")
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        try:
            with _translate():
                self._client.update_item(
                    TableName=self.send_table,
                    Key=_key(row_id),
                    UpdateExpression=expression,
                    ConditionExpression=condition.expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except RowChangedError:
            return False
        return True

    def due_rows(self, status: str, now: str, *, page_size: int = 100) -> Iterator[WaitingRow]:
        """Rows with ``status`` whose ``retry_at`` is at or before ``now``, oldest first.

        A paginated Query of the sparse index, never a Scan: its cost follows the rows that
        are due, not the size of the table.
        """
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.send_table,
            IndexName=WAITING_INDEX,
            KeyConditionExpression="#status = :status AND #retry_at <= :now",
            ExpressionAttributeNames={"#status": "status", "#retry_at": "retry_at"},
            ExpressionAttributeValues={":status": {"S": status}, ":now": {"S": now}},
            PaginationConfig={"PageSize": page_size},
        )
        with _translate():
            for page in pages:
                for item in page.get("Items", []):
                    yield WaitingRow(item["id"]["S"], item["status"]["S"], item["retry_at"]["S"])

    def refire(self, row: WaitingRow, *, lease_until: str) -> bool:
        """Bump ``revision`` so the stream sends the row again; False if it moved meanwhile.

        Conditional on the row still waiting with the status and ``retry_at`` it was found
        with: two sweepers never both fire it, and a row a person edited (or the dispatcher
        re-stamped) is left to its own record. ``retry_at`` moves to ``lease_until`` so the
        next sweep does not fire it again while the dispatcher is still on it.
        """
        try:
            with _translate():
                self._client.update_item(
                    TableName=self.send_table,
                    Key=_key(row.id),
                    UpdateExpression="ADD #revision :one SET #retry_at = :lease",
                    ConditionExpression="#status = :status AND #retry_at = :retry_at",
                    ExpressionAttributeNames={
                        "#revision": "revision",
                        "#status": "status",
                        "#retry_at": "retry_at",
                    },
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":lease": {"S": lease_until},
                        ":status": {"S": row.status},
                        ":retry_at": {"S": row.retry_at},
                    },
                )
        except RowChangedError:
            return False
        return True

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
        with _translate():
            for page in paginator.paginate(
                TableName=self.history_table,
                KeyConditionExpression=key,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ):
                items.extend(page.get("Items", []))
        return items

    def scan_history(self, *, since: str | None = None) -> Iterator[dict[str, Any]]:
        """History items of every row (sent at or after ``since``): a paginated Scan."""
        return self._scan(self.history_table, {"sent_at": (">=", since)})

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
        try:
            with _translate():
                self._client.put_item(TableName=self.send_table, Item=item, **condition)
        except RowChangedError:
            raise RowExistsError(f"a row with id {item['id']['S']!r} already exists") from None

    def waiting_rows(self, status: str) -> Iterator[dict[str, Any]]:
        """Every row with ``status`` deferred or scheduled, in ``retry_at`` order: the
        sparse index (keys only) gives the ids, BatchGetItem the rows, 100 at a time."""
        ids: list[str] = []
        for row in self.due_rows(status, "9999"):
            ids.append(row.id)
            if len(ids) == BATCH_GET_LIMIT:
                yield from self._get_rows(ids)
                ids = []
        if ids:
            yield from self._get_rows(ids)

    def _get_rows(self, ids: list[str]) -> Iterator[dict[str, Any]]:
        """Rows by id, in the order given; rows gone meanwhile are left out."""
        found: dict[str, dict[str, Any]] = {}
        request: Any = {self.send_table: {"Keys": [_key(i) for i in ids], "ConsistentRead": True}}
        for attempt in range(BATCH_GET_ATTEMPTS):
            if attempt:
                time.sleep(min(1.0, 0.05 * 2**attempt))  # DynamoDB asks for a backoff
            with _translate():
                response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self.send_table, []):
                found[item["id"]["S"]] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise StoreUnavailableError(
                f"DynamoDB left {len(request[self.send_table]['Keys'])} of {len(ids)} rows "
                f"unread after {BATCH_GET_ATTEMPTS} attempts (throttled); try again"
            )
        return (found[i] for i in ids if i in found)

    def scan_rows(
        self, *, status: str | None = None, error_kind: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows of the send table, optionally filtered: a paginated Scan."""
        return self._scan(
            self.send_table, {"status": ("=", status), "error_kind": ("=", error_kind)}
        )

    def bump_revision(self, row_id: str, *, status: str | None) -> bool:
        """Re-fire a row by bumping ``revision``, if it still exists with ``status``.

        Returns False if the row is gone or its status changed since it was read (it was
        sent, or the dispatcher is already on it).
        """
        condition = "attribute_exists(#id) AND " + (
            "#status = :status" if status is not None else "attribute_not_exists(#status)"
        )
        values: dict[str, Any] = {":one": {"N": "1"}}
        if status is not None:
            values[":status"] = {"S": status}
        try:
            with _translate():
                self._client.update_item(
                    TableName=self.send_table,
                    Key=_key(row_id),
                    UpdateExpression="ADD #revision :one",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={
                        "#id": "id",
                        "#revision": "revision",
                        "#status": "status",
                    },
                    ExpressionAttributeValues=values,
                )
        except RowChangedError:
            return False
        return True

    def delete_row(self, row_id: str) -> bool:
        """Cancel a row; False if there was none."""
        try:
            with _translate():
                self._client.delete_item(
                    TableName=self.send_table,
                    Key=_key(row_id),
                    ConditionExpression="attribute_exists(#id)",
                    ExpressionAttributeNames={"#id": "id"},
                )
        except RowChangedError:
            return False
        return True

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
        with _translate():
            for page in self._client.get_paginator("scan").paginate(**kwargs):
                yield from page.get("Items", [])

    def _history_update(self, entry: HistoryEntry, *, replayed: bool) -> dict[str, Any]:
        # An Update, not a Put: the key (id, sent_at) comes from the idempotency record, so a
        # replay rewrites the same item with the same values and only bumps `replays`.
        fields: dict[str, Any] = {
            "provider": {"S": entry.provider},
            "to": {"S": entry.to},
            "subject": {"S": entry.subject},
            "attempts": {"N": str(entry.attempts)},
            "content_hash": {"S": entry.content_hash},
            "expires_at": {"N": str(entry.expires_at)},
            "cc_count": {"N": str(entry.cc_count)},
            "bcc_count": {"N": str(entry.bcc_count)},
        }
        if entry.delivery_id is not None:
            fields["delivery_id"] = {"S": entry.delivery_id}
        names = {f"#h{i}": name for i, name in enumerate(fields)}
        values = {f":h{i}": value for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#h{i} = :h{i}" for i in range(len(fields)))
        if replayed:
            names["#replays"] = "replays"
            values[":one"] = {"N": "1"}
            expression += " ADD #replays :one"
        return {
            "TableName": self.history_table,
            "Key": {"id": {"S": entry.id}, "sent_at": {"S": entry.sent_at}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }


class _ContentCondition:
    """``attribute_exists(id)`` and every request attribute exactly as in ``image``."""

    def __init__(self, image: Image) -> None:
        self.names: dict[str, str] = {"#id": "id"}
        self.values: dict[str, Any] = {}
        parts = ["attribute_exists(#id)"]
        for index, name in enumerate(sorted(REQUEST_ATTRIBUTES)):
            self.names[f"#r{index}"] = name
            if name in image:
                # `=` compares every type, lists and maps included (DynamoDB API reference,
                # Condition: "EQ is supported for all data types, including lists and maps").
                self.values[f":r{index}"] = image[name]
                parts.append(f"#r{index} = :r{index}")
            else:
                parts.append(f"attribute_not_exists(#r{index})")
        self.expression = " AND ".join(parts)


@contextmanager
def _translate() -> Iterator[None]:
    """Map DynamoDB failures onto :class:`RowChangedError` / :class:`StoreUnavailableError`."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException" or (
            code == "TransactionCanceledException" and _only_condition_failures(exc)
        ):
            raise RowChangedError(code) from exc
        raise StoreUnavailableError(f"DynamoDB {code}: {exc}") from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise StoreUnavailableError(f"DynamoDB unreachable: {exc}") from exc
    except BotoCoreError as exc:  # e.g. a request botocore refuses to send
        raise StoreUnavailableError(f"DynamoDB call failed: {exc}") from exc


def _only_condition_failures(exc: ClientError) -> bool:
    """True if a cancelled transaction failed on conditions alone, not on throttling."""
    reasons = exc.response.get("CancellationReasons") or []
    codes = {r.get("Code") for r in reasons if r.get("Code") not in (None, "None")}
    if not codes:  # no reasons given: fall back to the message, as moto and DynamoDB word it
        return "ConditionalCheckFailed" in str(exc)
    return codes == {"ConditionalCheckFailed"}


def _key(row_id: str) -> dict[str, Any]:
    return {"id": {"S": row_id}}


def _clip(text: str) -> str:
    return text if len(text) <= LAST_ERROR_MAX_CHARS else text[: LAST_ERROR_MAX_CHARS - 1] + "…"
