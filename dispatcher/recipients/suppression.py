"""The suppression list: addresses mail is not sent to, each with the bounce that put it there.

A hard bounce (``HARDERROR``) or blastengine's stop list (``DROP``) puts an address here; so
can an operator (``dispatcher suppressed add``). Before a send, every recipient of the row is
looked up in one ``BatchGetItem``: a suppressed ``to`` fails the row ``suppressed`` with no
API call, a suppressed ``cc``/``bcc`` is left out of the send (the history item names it).
Sending again to an address that bounced is what costs a sender its reputation.

Addresses are compared normalised: trimmed and lower-cased. RFC 5321 lets a local part be
case-sensitive, but no mailbox provider of note treats ``Hanako@`` and ``hanako@`` as two.

Each entry has a **scope**: ``all`` (a hard bounce, a drop, a complaint, an operator's global
entry) or a category (an unsubscribe from the newsletter, an operator's entry for it). A row
is refused if its recipient is suppressed for ``all`` or for the row's category; a
transactional row only by ``all``. An entry for ``all`` is keyed by the address (as before
scopes existed); one for a category by ``address|category`` (a domain holds no ``|``), so a
row's look-up stays one ``BatchGetItem`` of both keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dispatcher.model.message import Message
from dispatcher.model.row import TRANSACTIONAL
from dispatcher.model.row import normalise_address as normalise
from dispatcher.storage.dynamodb import batch_get, conditionally, translated

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = [
    "ALL",
    "LIFTED",
    "RecipientSuppressedError",
    "Suppression",
    "SuppressionList",
    "entry_key",
    "leaving_out",
    "normalise",
    "without_suppressed",
]


#: The attribute of a lifted suppression: when an operator lifted it (the item stays, so a
#: bounce from before cannot put the address back).
LIFTED = "lifted_at"
#: The scope of an entry that holds every mail back (bounces, complaints, drops).
ALL = "all"
#: What separates an address from a category in an entry's key.
_SCOPE_SEPARATOR = "|"


def entry_key(address: str, scope: str = ALL) -> str:
    """The table's key of an address's entry for ``scope``."""
    address = normalise(address)
    return address if scope == ALL else f"{address}{_SCOPE_SEPARATOR}{scope}"


def _split_key(key: str) -> tuple[str, str]:
    address, separator, scope = key.rpartition(_SCOPE_SEPARATOR)
    if separator and "@" in address and "@" not in scope:
        return address, scope
    return key, ALL


@dataclass(frozen=True)
class Suppression:
    """Why one address is suppressed: the bounce (or the operator) that put it here."""

    address: str
    reason: str  # HARDERROR, DROP, COMPLAINT, UNSUBSCRIBE or OPERATOR
    added_at: str
    bounced_at: str | None = None
    code: str | None = None
    message: str | None = None
    delivery_id: str | None = None
    #: ``all``, or the category it holds back.
    scope: str = ALL
    #: Who put it here (``cli``, ``console``, ``unsubscribe``, ``import``...).
    added_by: str | None = None

    def describe(self) -> str:
        """``HARDERROR bounce at 2026-11-30T10:00:00+09:00, code 550`` and the like."""
        scope = f" (for {self.scope} mail)" if self.scope != ALL else ""
        if self.reason == "OPERATOR":
            note = f": {self.message}" if self.message else ""
            return f"suppressed by an operator at {self.added_at}{scope}{note}"
        if self.reason == "UNSUBSCRIBE":
            return f"unsubscribed from {self.scope} mail at {self.added_at}"
        code = f", code {self.code}" if self.code else ""
        return f"{self.reason} bounce at {self.bounced_at or self.added_at}{code}{scope}"

    def item(self) -> dict[str, Any]:
        fields = {
            "address": entry_key(self.address, self.scope),
            "email": self.address if self.scope != ALL else None,
            "scope": self.scope if self.scope != ALL else None,
            "added_by": self.added_by,
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

        address, scope = _split_key(text("address") or "")
        return cls(
            address=address,
            scope=scope,
            added_by=text("added_by"),
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
        """The message as it may be sent: suppressed cc/bcc left out, in one read (each
        recipient for ``all`` and, but for transactional mail, for the message's category).

        Raises
        ------
        RecipientSuppressedError
            Its ``to`` is suppressed.
        """
        found = self.find(message.recipients, category=message.category)
        sendable = without_suppressed(message, found)
        if isinstance(sendable, str):
            raise RecipientSuppressedError(sendable)
        return sendable

    def find(
        self, addresses: Iterable[str], *, category: str = TRANSACTIONAL
    ) -> dict[str, Suppression]:
        """The suppressed ones among ``addresses`` for ``all`` or ``category``, by normalised
        address (an ``all`` entry first), in one read."""
        wanted = sorted({normalise(a) for a in addresses})
        if not wanted:
            return {}
        scopes = (ALL,) if category == TRANSACTIONAL else (ALL, category)
        keys = [{"address": {"S": entry_key(a, s)}} for a in wanted for s in scopes]
        items = batch_get(self._client, self.table, keys)
        entries = sorted(
            (Suppression.from_item(i) for i in items if LIFTED not in i),
            key=lambda e: e.scope != ALL,
        )
        found: dict[str, Suppression] = {}
        for entry in entries:
            found.setdefault(entry.address, entry)
        return found

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

    def remove(self, address: str, *, now: str, scope: str = ALL, by: str | None = None) -> bool:
        """Lift an address's suppression for ``scope``, keeping when (``now``, UTC) and who,
        so that a bounce from before it cannot put the address back; False if it was not
        suppressed so."""
        item = {"address": {"S": entry_key(address, scope)}, LIFTED: {"S": now}}
        if by:
            item["lifted_by"] = {"S": by}
        return conditionally(
            self._client.put_item,
            TableName=self.table,
            Item=item,
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
