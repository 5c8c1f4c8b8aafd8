"""The suppression list: addresses mail is not sent to, each with the bounce that put it there.

A hard bounce (``HARDERROR``) or blastengine's stop list (``DROP``) puts an address here; so
can an operator (``dispatcher suppressed add``). Before a send, every recipient of the row is
looked up in one ``BatchGetItem``: a suppressed ``to`` fails the row ``suppressed`` with no
API call, a suppressed ``cc``/``bcc`` is left out of the send (the history item names it).
Sending again to an address that bounced is what costs a sender its reputation.

Addresses are compared normalised: trimmed and lower-cased. RFC 5321 lets a local part be
case-sensitive, but no mailbox provider of note treats ``Hanako@`` and ``hanako@`` as two.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dispatcher.model.message import Message
from dispatcher.model.row import normalise_address as normalise
from dispatcher.storage.dynamodb import batch_get, conditionally, translated

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = [
    "LIFTED",
    "RecipientSuppressedError",
    "Suppression",
    "SuppressionList",
    "leaving_out",
    "normalise",
    "without_suppressed",
]


#: The attribute of a lifted suppression: when an operator lifted it (the item stays, so a
#: bounce from before cannot put the address back).
LIFTED = "lifted_at"


@dataclass(frozen=True)
class Suppression:
    """Why one address is suppressed: the bounce (or the operator) that put it here."""

    address: str
    reason: str  # HARDERROR, DROP, or OPERATOR
    added_at: str
    bounced_at: str | None = None
    code: str | None = None
    message: str | None = None
    delivery_id: str | None = None

    def describe(self) -> str:
        """``HARDERROR bounce at 2026-11-30T10:00:00+09:00, code 550`` and the like."""
        if self.reason == "OPERATOR":
            note = f": {self.message}" if self.message else ""
            return f"suppressed by an operator at {self.added_at}{note}"
        code = f", code {self.code}" if self.code else ""
        return f"{self.reason} bounce at {self.bounced_at or self.added_at}{code}"

    def item(self) -> dict[str, Any]:
        fields = {
            "address": self.address,
            "reason": self.reason,
            "added_at": self.added_at,
            "bounced_at": self.bounced_at,
            "code": self.code,
            "message": self.message,
            "delivery_id": self.delivery_id,
        }
        return {k: {"S": v} for k, v in fields.items() if v}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Suppression:
        def text(name: str) -> str | None:
            value = item.get(name, {}).get("S")
            return value if isinstance(value, str) else None

        return cls(
            address=text("address") or "",
            reason=text("reason") or "OPERATOR",
            added_at=text("added_at") or "",
            bounced_at=text("bounced_at"),
            code=text("code"),
            message=text("message"),
            delivery_id=text("delivery_id"),
        )


def without_suppressed(message: Message, found: dict[str, Suppression]) -> Message | str:
    """The message without its suppressed cc/bcc (named in ``left_out``), or, if its ``to``
    is suppressed, the reason the row fails with."""
    entry = found.get(normalise(message.to))
    if entry is not None:
        return (
            f"to: {message.to} is suppressed ({entry.describe()}); fix the address, or lift "
            "the suppression with `dispatcher suppressed remove`"
        )

    return leaving_out(message, found)  # its keys are the normalised suppressed addresses


def leaving_out(message: Message, left_out: Iterable[str]) -> Message:
    """The message without the cc/bcc addresses ``left_out`` (named in its ``left_out``): as
    it was sent, rebuilt for a replay from what the idempotency record kept."""
    gone = {normalise(a) for a in left_out}
    if not gone:
        return message

    def kept(addresses: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(a for a in addresses if normalise(a) not in gone)

    dropped = tuple(a for a in (*message.cc, *message.bcc) if normalise(a) in gone)
    return replace(
        message,
        cc=kept(message.cc),
        bcc=kept(message.bcc),
        left_out=(*message.left_out, *dropped),  # the staging screen may have named some
    )


class RecipientSuppressedError(Exception):
    """The message's ``to`` is on the suppression list; ``reason`` is the row's last error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SuppressionList:
    """The suppression table: looked up before each send, edited by bounces and operators."""

    @classmethod
    def from_settings(cls, settings: Settings, client: DynamoDBClient) -> SuppressionList | None:
        """The deployment's list, or None without ``SUPPRESSION_TABLE_NAME``."""
        if not settings.suppression_table_name:
            return None
        return cls(table=settings.suppression_table_name, boto3_client=client)

    def __init__(self, *, table: str, boto3_client: DynamoDBClient) -> None:
        self.table = table
        self._client = boto3_client

    def screen(self, message: Message) -> Message:
        """The message as it may be sent: suppressed cc/bcc left out, in one read.

        Raises
        ------
        RecipientSuppressedError
            Its ``to`` is suppressed.
        """
        sendable = without_suppressed(message, self.find(message.recipients))
        if isinstance(sendable, str):
            raise RecipientSuppressedError(sendable)
        return sendable

    def find(self, addresses: Iterable[str]) -> dict[str, Suppression]:
        """The suppressed ones among ``addresses``, by normalised address, in one read."""
        wanted = sorted({normalise(a) for a in addresses})
        if not wanted:
            return {}
        keys = [{"address": {"S": a}} for a in wanted]
        items = batch_get(self._client, self.table, keys)
        entries = (Suppression.from_item(i) for i in items if LIFTED not in i)
        return {entry.address: entry for entry in entries}

    def add(self, entry: Suppression) -> None:
        """Put (or replace) an address's suppression."""
        with translated():
            self._client.put_item(TableName=self.table, Item=entry.item())

    def add_once(self, entry: Suppression, *, happened_at: str) -> bool:
        """Put an address's suppression unless it has one: the first bounce stays the reason,
        and a bounce reported twice changes nothing. Nor does a bounce that happened (UTC,
        ``happened_at``) before an operator lifted the address's suppression: a replayed or
        late event never undoes a person's decision. False if nothing was put."""
        return conditionally(
            self._client.put_item,
            TableName=self.table,
            Item=entry.item(),
            ConditionExpression=(
                "attribute_not_exists(address) OR "
                "(attribute_exists(#lifted) AND #lifted < :happened)"
            ),
            ExpressionAttributeNames={"#lifted": LIFTED},
            ExpressionAttributeValues={":happened": {"S": happened_at}},
        )

    def remove(self, address: str, *, now: str) -> bool:
        """Lift an address's suppression, keeping when (``now``, UTC), so that a bounce from
        before it cannot put the address back; False if it was not suppressed."""
        return conditionally(
            self._client.put_item,
            TableName=self.table,
            Item={"address": {"S": normalise(address)}, LIFTED: {"S": now}},
            ConditionExpression="attribute_exists(address) AND attribute_not_exists(#lifted)",
            ExpressionAttributeNames={"#lifted": LIFTED},
        )

    def all(self) -> Iterator[Suppression]:
        """Every suppressed address: a paginated Scan (the list is for people to read)."""
        with translated():
            for page in self._client.get_paginator("scan").paginate(TableName=self.table):
                for item in page.get("Items", []):
                    if LIFTED not in item:
                        yield Suppression.from_item(item)
