"""The function's DynamoDB: the reads and conditional writes the dispatcher and sweeper make.

Every write is conditional on the row still holding the request attributes that were read
(``DESIGN.md``, "Sending", steps 4 and 5). The row carries no hash of its own, so the
condition is built from the attributes themselves: each one the row had must still be equal,
and each one it lacked must still be absent.

DynamoDB's failures reach callers as :mod:`dispatcher.storage.dynamodb`'s small tree: a failed
condition is :class:`RowChangedError` (someone edited or removed the row; leave it alone),
anything else :class:`StoreUnavailableError` (the handler reports a batch item failure, so
Lambda retries the record). The row is never lost either way.

What only operators do (listing, inserting, cancelling) is :mod:`dispatcher.ops.admin`'s, which
builds on this module and is not shipped in the Lambda package.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from dispatcher.model.delivery_status import DeliveryStatus
from dispatcher.model.row import REQUEST_ATTRIBUTES, Row, normalise_address, recipient_digest
from dispatcher.model.stamp import FailureStamp
from dispatcher.storage.dynamodb import (
    RowChangedError,
    StoreError,
    StoreUnavailableError,
    batch_get,
    conditionally,
    translated,
)
from dispatcher.support.clock import parse_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = [
    "LAST_ERROR_MAX_CHARS",
    "STAMPED_INDEX",
    "WAITING_INDEX",
    "HistoryEntry",
    "RowChangedError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "as_read",
    "row_key",
    "unchanged",
]

#: ``last_error`` is for people reading a console; a provider's whole answer is not.
LAST_ERROR_MAX_CHARS = 1000
#: The send table's sparse index of rows waiting for a time (``template.yaml``): only rows
#: carrying ``retry_at`` (deferred and scheduled ones) are in it.
WAITING_INDEX = "waiting-by-retry-at"
#: The send table's sparse index of rows stamped with a reason (failed and deferred ones, by
#: ``failed_at``), for operators' lists: the function never reads it.
STAMPED_INDEX = "stamped-by-failed-at"


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
    #: cc/bcc addresses left out of the send because they are suppressed.
    left_out: tuple[str, ...] = ()
    #: How the mail is known to be sent when its answer never came: ``"lookup"``.
    confirmed_by: str | None = None
    #: Who the row named, when REDIRECT_ALL_TO sent the mail elsewhere (staging).
    original_recipients: tuple[str, ...] = ()
    #: The mail as sent (:meth:`~dispatcher.model.message.Message.as_sent`), kept apart for
    #: ``HISTORY_BODY_DAYS``; None: not kept.
    mail: Mapping[str, Any] | None = None
    #: The history item this mail is a copy of (``dispatcher resend``).
    resent_from: str | None = None
    #: The template version it was rendered from (``name@version``).
    template: str | None = None
    #: The mail's category (``transactional`` where the row names none).
    category: str = "transactional"
    #: The cc and bcc addresses it went to, kept as digests with ``to``'s
    #: (``recipient_digests``): a bounce is applied only to an address the mail went to.
    copies: tuple[str, ...] = ()

    @property
    def recipient_digests(self) -> list[str]:
        return sorted({recipient_digest(a) for a in (self.to, *self.copies)})


class Store:
    """Reads and conditionally writes the send and history tables.

    Parameters
    ----------
    boto3_client:
        A low-level DynamoDB client; injected by tests and the local stack. By default one
        is created, following boto3's own ``AWS_ENDPOINT_URL`` and region settings.
    """

    @classmethod
    def from_settings(cls, settings: Settings, client: DynamoDBClient | None = None) -> Store:
        keeps_bodies = settings.sent_mail_table_name and settings.history_body_days > 0
        return cls(
            send_table=settings.send_table_name,
            history_table=settings.history_table_name,
            boto3_client=client,
            sent_mail_table=settings.sent_mail_table_name if keeps_bodies else None,
            body_days=settings.history_body_days,
        )

    def __init__(
        self,
        *,
        send_table: str,
        history_table: str,
        boto3_client: DynamoDBClient | None = None,
        sent_mail_table: str | None = None,
        body_days: int = 30,
    ) -> None:
        self.send_table = send_table
        self.history_table = history_table
        #: Where the mail as sent is kept for ``body_days`` (None: it is not kept).
        self.sent_mail_table = sent_mail_table
        self.body_days = body_days
        self.client: DynamoDBClient = boto3_client or boto3.client("dynamodb")

    def get_row(self, row_id: str) -> Row | None:
        """The row as stored now (strongly consistent), or None if it is gone."""
        with translated():
            response = self.client.get_item(
                TableName=self.send_table, Key=row_key(row_id), ConsistentRead=True
            )
        item = response.get("Item")
        return Row.from_image(row_id, item) if item else None

    def get_rows(self, ids: list[str]) -> dict[str, Row]:
        """The rows of ``ids`` (at most 100) as stored now, by id, in one BatchGetItem;
        rows gone are left out."""
        items = batch_get(self.client, self.send_table, [row_key(i) for i in ids])
        rows = (Row.from_item(item) for item in items)
        return {row.id: row for row in rows if row is not None}

    def recorded_at(self, row_id: str, delivery_id: str | None) -> str | None:
        """The ``sent_at`` of the row's history item for ``delivery_id``, if one exists.

        For the two paths that may meet a mail already recorded (a replay, a look-up's
        confirmation): a sweeper's re-fire between a replay's read and its transaction makes
        the replay write its history alone and keep the row, whose re-fired record then finds
        the same delivery by look-up. Writing to the item that exists keeps one item per mail.
        """
        if delivery_id is None:
            return None
        with translated():
            items = self.client.query(
                TableName=self.history_table,
                KeyConditionExpression="#id = :id",
                FilterExpression="#delivery = :delivery",
                ExpressionAttributeNames={"#id": "id", "#delivery": "delivery_id"},
                ExpressionAttributeValues={":id": {"S": row_id}, ":delivery": {"S": delivery_id}},
                ProjectionExpression="sent_at",
                ConsistentRead=True,
            ).get("Items", [])
        return items[0]["sent_at"]["S"] if items else None

    def record_sent(self, entry: HistoryEntry, sent: Row, *, replayed: bool) -> bool:
        """Move a sent row: write its history item and delete it, in one transaction.

        If the row changed while the mail was in flight (or is already gone), the history is
        written alone and the row kept: its own stream record sends the new content.
        ``replayed`` marks a send the idempotency store recognised as already done, which
        the history item counts in ``replays``.

        Returns True if the row was deleted, False if it was kept.
        """
        update = self._history_update(entry, replayed=replayed)
        condition = _content_condition(sent)
        items: list[Any] = [
            {"Update": update},
            # Closes the race with an edit made while the send was in flight: only the
            # content that was sent may be deleted.
            {"Delete": {"TableName": self.send_table, "Key": row_key(sent.id), **condition}},
        ]
        mail = self._mail_item(entry)
        if mail is not None:
            items.append({"Put": {"TableName": self.sent_mail_table, "Item": mail}})
        moved = conditionally(self.client.transact_write_items, TransactItems=items)
        if not moved:
            with translated():
                self.client.update_item(**update)
                if mail is not None:
                    self.client.put_item(TableName=str(self.sent_mail_table), Item=mail)
        return moved

    def sent_mail(self, row_id: str, sent_at: str) -> dict[str, Any] | None:
        """The mail as sent under ``row_id`` at ``sent_at``, as plain values; None if it is
        not kept (HISTORY_BODY_DAYS passed, or none are kept)."""
        if not self.sent_mail_table:
            return None
        with translated():
            item = self.client.get_item(
                TableName=self.sent_mail_table,
                Key={"id": {"S": row_id}, "sent_at": {"S": sent_at}},
            ).get("Item")
        if not item:
            return None
        deserializer = TypeDeserializer()
        return {k: deserializer.deserialize(v) for k, v in item.items() if k != "expires_at"}

    def _mail_item(self, entry: HistoryEntry) -> dict[str, Any] | None:
        """The mail as sent, as an item of the sent-mail table, gone ``body_days`` after it
        was sent (the table's TTL); None where bodies are not kept."""
        if entry.mail is None or not self.sent_mail_table:
            return None
        sent = parse_iso(entry.sent_at)
        if sent is None:
            return None
        serializer = TypeSerializer()
        fields = {k: v for k, v in entry.mail.items() if v not in (None, "", [], ())}
        return {
            "id": {"S": entry.id},
            "sent_at": {"S": entry.sent_at},
            "expires_at": {"N": str(int((sent + timedelta(days=self.body_days)).timestamp()))},
            **{k: serializer.serialize(v) for k, v in fields.items()},
        }

    def record_history(self, entry: HistoryEntry) -> None:
        """Write a history item alone: a mail a look-up found taken for content the row no
        longer holds (it was edited since); the row's new content is still to be sent."""
        with translated():
            self.client.update_item(**self._history_update(entry, replayed=False))

    def stamp(self, row: Row, stamp: FailureStamp) -> bool:
        """Write why a row was not sent; False if the row changed or is gone meanwhile.

        Conditional on ``attribute_exists(id)`` (never resurrect a row deleted meanwhile) and
        on the content that was tried (a row edited in flight is left to its own MODIFY,
        not stamped with an error its new content never had).
        """
        fields: dict[str, Any] = {
            "status": {"S": stamp.status.value},
            "attempts": {"N": str(stamp.attempts)},
            "last_error": {"S": _clip(stamp.last_error)} if stamp.last_error else None,
            "error_kind": {"S": stamp.error_kind.value} if stamp.error_kind else None,
            "http_status": {"N": str(stamp.http_status)} if stamp.http_status else None,
            "failed_at": {"S": stamp.stamped_at} if stamp.error_kind else None,
            # Only rows waiting for a time carry retry_at: it keys the sweeper's sparse index.
            "retry_at": {"S": stamp.retry_at} if stamp.retry_at else None,
            "fired_at": None,  # the re-fire, if any, has been dealt with
            # A send that may have been taken stays named until a look-up settles it.
            "unsettled": stamp.unsettled.to_attribute() if stamp.unsettled else None,
        }
        condition = _content_condition(row)
        names, values = (
            condition["ExpressionAttributeNames"],
            condition["ExpressionAttributeValues"],
        )
        sets, removes = [], []
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
        return conditionally(
            self.client.update_item,
            TableName=self.send_table,
            Key=row_key(row.id),
            UpdateExpression=expression,
            **condition,
        )

    def due_rows(self, status: str, now: str, *, page_size: int = 100) -> Iterator[Row]:
        """Rows with ``status`` whose ``retry_at`` is at or before ``now``, oldest first.

        A paginated Query of the sparse index, never a Scan: its cost follows the rows that
        are due, not the size of the table. The index holds keys only, so each row carries
        its id, status and ``retry_at``: enough for :meth:`refire`'s condition.
        """
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.send_table,
            IndexName=WAITING_INDEX,
            KeyConditionExpression="#status = :status AND #retry_at <= :now",
            ExpressionAttributeNames={"#status": "status", "#retry_at": "retry_at"},
            ExpressionAttributeValues={":status": {"S": status}, ":now": {"S": now}},
            PaginationConfig={"PageSize": page_size},
        )
        with translated():
            for page in pages:
                for item in page.get("Items", []):
                    row = Row.from_item(item)
                    if row is not None:
                        yield row

    def refire(self, row: Row, *, now: str, lease_until: str | None = None) -> bool:
        """Bump ``revision`` so the stream sends the row again; False if it moved meanwhile.

        The one way anything re-fires a row (the sweeper, the CLI, the console). Conditional
        on the row still existing with the ``status`` and ``retry_at`` it was read with: two
        sweepers never both fire it, and a row a person edited (or the dispatcher re-stamped)
        is left to its own record. ``lease_until`` moves ``retry_at`` on, so that the next
        sweep does not fire the row again while the dispatcher is still on it; ``fired_at``
        = ``now`` says, until the next stamp, that the dispatcher may be sending it.
        """
        condition = as_read(row)
        condition["ExpressionAttributeNames"]["#revision"] = "revision"
        values = condition.setdefault("ExpressionAttributeValues", {})
        condition["ExpressionAttributeNames"]["#fired_at"] = "fired_at"
        values[":one"] = {"N": "1"}
        values[":now"] = {"S": now}
        update = "ADD #revision :one SET #fired_at = :now"
        if lease_until is not None:
            values[":lease"] = {"S": lease_until}
            update += ", #retry_at = :lease"
        return conditionally(
            self.client.update_item,
            TableName=self.send_table,
            Key=row_key(row.id),
            UpdateExpression=update,
            **condition,
        )

    def delete_answered_refire(self, row: Row) -> bool:
        """Delete a row that was re-fired while its mail was being sent; False if it changed
        since it was read (an edit is never deleted).

        Conditional on the row's content as read and on its ``fired_at``: only the re-fire
        that was read is answered, never a later one or a person's edit.
        """
        condition = unchanged(row)
        condition["ExpressionAttributeNames"]["#fired_at"] = "fired_at"
        condition.setdefault("ExpressionAttributeValues", {})[":fired_at"] = {"S": row.fired_at}
        condition["ConditionExpression"] += " AND #fired_at = :fired_at"
        return conditionally(
            self.client.delete_item,
            TableName=self.send_table,
            Key=row_key(row.id),
            **condition,
        )

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
            "recipient_digests": {"SS": entry.recipient_digests},
            # The key of the history's by-recipient index: every mail to one address.
            "recipient": {"S": normalise_address(entry.to)},
        }
        if entry.delivery_id is not None:
            fields["delivery_id"] = {"S": entry.delivery_id}
        if entry.left_out:
            fields["suppressed_recipients"] = {"L": [{"S": a} for a in entry.left_out]}
        if entry.confirmed_by:
            fields["confirmed_by"] = {"S": entry.confirmed_by}
        if entry.original_recipients:
            fields["original_recipients"] = {"L": [{"S": a} for a in entry.original_recipients]}
        if entry.resent_from:
            fields["resent_from"] = {"S": entry.resent_from}
        if entry.template:
            fields["template"] = {"S": entry.template}
        fields["category"] = {"S": entry.category}
        names = {f"#h{i}": name for i, name in enumerate(fields)}
        values = {f":h{i}": value for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#h{i} = :h{i}" for i in range(len(fields)))
        # Every sent mail starts `accepted` (rank 0); a replay keeps whatever status the
        # provider has reported since (dispatcher/model/delivery_status.py).
        names |= {
            "#ds": "delivery_status",
            "#dr": "delivery_status_rank",
            "#da": "delivery_status_at",
        }
        values |= {
            ":accepted": {"S": DeliveryStatus.ACCEPTED.value},
            ":rank0": {"N": str(DeliveryStatus.ACCEPTED.rank)},
            ":sent": {"S": entry.sent_at},
        }
        expression += (
            ", #ds = if_not_exists(#ds, :accepted), #dr = if_not_exists(#dr, :rank0),"
            " #da = if_not_exists(#da, :sent)"
        )
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


def _content_condition(row: Row) -> dict[str, Any]:
    """``attribute_exists(id)`` and every request attribute exactly as ``row`` holds it, as
    the keyword arguments of a conditional write (fresh dicts: callers add to them)."""
    names: dict[str, str] = {"#id": "id"}
    values: dict[str, Any] = {}
    parts = ["attribute_exists(#id)"]
    for index, name in enumerate(sorted(REQUEST_ATTRIBUTES)):
        names[f"#r{index}"] = name
        if name in row.image:
            # `=` compares every type, lists and maps included (DynamoDB API reference,
            # Condition: "EQ is supported for all data types, including lists and maps").
            values[f":r{index}"] = row.image[name]
            parts.append(f"#r{index} = :r{index}")
        else:
            parts.append(f"attribute_not_exists(#r{index})")
    return {
        "ConditionExpression": " AND ".join(parts),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def as_read(row: Row) -> dict[str, Any]:
    """The condition that ``row`` still exists with the ``status`` and ``retry_at`` it was
    read with, as a conditional write's keyword arguments (fresh dicts: callers add to them)."""
    names = {"#id": "id", "#status": "status", "#retry_at": "retry_at"}
    values: dict[str, Any] = {}
    parts = ["attribute_exists(#id)"]
    for name, expected in (("status", row.status), ("retry_at", row.retry_at)):
        if expected is None:
            parts.append(f"attribute_not_exists(#{name})")
        else:
            values[f":{name}"] = {"S": expected}
            parts.append(f"#{name} = :{name}")
    condition: dict[str, Any] = {
        "ConditionExpression": " AND ".join(parts),
        "ExpressionAttributeNames": names,
    }
    if values:  # DynamoDB refuses an empty ExpressionAttributeValues
        condition["ExpressionAttributeValues"] = values
    return condition


def unchanged(row: Row) -> dict[str, Any]:
    """The condition that ``row`` is still exactly as it was read: its request attributes
    (:func:`_content_condition`) and its ``status`` and ``retry_at`` (:func:`as_read`). What
    a person's edit is conditioned on, so that it never overwrites a change made meanwhile."""
    content, stamp = _content_condition(row), as_read(row)
    condition: dict[str, Any] = {
        "ConditionExpression": f"{content['ConditionExpression']} AND "
        f"{stamp['ConditionExpression']}",
        "ExpressionAttributeNames": {
            **content["ExpressionAttributeNames"],
            **stamp["ExpressionAttributeNames"],
        },
    }
    values = {**content["ExpressionAttributeValues"], **stamp.get("ExpressionAttributeValues", {})}
    if values:  # DynamoDB refuses an empty ExpressionAttributeValues
        condition["ExpressionAttributeValues"] = values
    return condition


def row_key(row_id: str) -> dict[str, Any]:
    """The send table's key of a row."""
    return {"id": {"S": row_id}}


def _clip(text: str) -> str:
    return text if len(text) <= LAST_ERROR_MAX_CHARS else text[: LAST_ERROR_MAX_CHARS - 1] + "…"
