"""Erasing one person: what the stack keeps of an address, removed on request.

The mail as sent (kept ``HISTORY_BODY_DAYS``) is deleted. The history keeps a mail's counts
and times (figures stay true) but loses the address: its ``to`` becomes ``(erased)``, the
by-recipient index no longer finds it, its digest leaves ``recipient_digests`` and its bounce
fields go. Rows still waiting to be sent to the address
are deleted, each on condition that it is as it was read (one that changed meanwhile is
named, to erase again); a row whose send is under way may still go out, without a history
item. Bounce events that name it lose the address. The suppression entry stays: it is what
keeps the address from being mailed again, and erasing it would let the next row through.

Mail where the address was only in cc or bcc is not found (those are kept as digests, which
no index lists); nor is mail sent before the history kept ``recipient``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dispatcher.model.row import Row, normalise_address, recipient_digest
from dispatcher.storage.dynamodb import conditionally, translated

if TYPE_CHECKING:
    from dispatcher.ops.admin import Admin

__all__ = ["ERASED", "Erasure", "erase"]

#: What an erased address reads as wherever it stood.
ERASED = "(erased)"


@dataclass
class Erasure:
    """What one erasure removed, and what it left and why."""

    address: str
    history_items: list[str] = field(default_factory=list)  # "id @ sent_at"
    rows_deleted: list[str] = field(default_factory=list)
    rows_left: list[str] = field(default_factory=list)  # changed while being read: run again
    bounce_events: int = 0
    bodies: int = 0  # kept mails as sent, deleted
    suppressed: bool = False  # the entry stays, on purpose


def erase(admin: Admin, address: str, *, bounce_table: str | None) -> Erasure:
    """Erase ``address`` from the history, the send table and the bounce table."""
    address = normalise_address(address)
    done = Erasure(address)
    for item in list(admin.history_to(address)):
        _erase_history_item(admin, item, address)
        done.history_items.append(f"{item['id']['S']} @ {item['sent_at']['S']}")
        done.bodies += _erase_body(admin, item)
    for item in admin.scan_rows_to(address):
        row = Row.from_item(item)
        if row is None:
            continue
        if admin.cancel(row):
            done.rows_deleted.append(row.id)
        else:
            done.rows_left.append(row.id)
    if bounce_table:
        done.bounce_events = _erase_bounce_events(admin, bounce_table, address)
    done.suppressed = admin.suppression(address) is not None
    return done


def _erase_history_item(admin: Admin, item: dict[str, Any], address: str) -> None:
    with translated():
        admin.store.client.update_item(
            TableName=admin.store.history_table,
            Key={"id": item["id"], "sent_at": item["sent_at"]},
            UpdateExpression=(
                "SET #to = :erased REMOVE recipient, bounce_address, bounced_addresses, "
                "original_recipients, suppressed_recipients DELETE recipient_digests :d"
            ),
            ConditionExpression="attribute_exists(id)",
            ExpressionAttributeNames={"#to": "to"},
            ExpressionAttributeValues={
                ":erased": {"S": ERASED},
                ":d": {"SS": [recipient_digest(address)]},
            },
        )


def _erase_body(admin: Admin, item: dict[str, Any]) -> int:
    """The mail as sent (its own table), deleted: it holds the address and what was said."""
    table = admin.store.sent_mail_table
    if not table:
        return 0
    return int(
        conditionally(
            admin.store.client.delete_item,
            TableName=table,
            Key={"id": item["id"], "sent_at": item["sent_at"]},
            ConditionExpression="attribute_exists(id)",
        )
    )


def _erase_bounce_events(admin: Admin, table: str, address: str) -> int:
    client = admin.store.client
    erased = 0
    with translated():
        pages = client.get_paginator("scan").paginate(
            TableName=table,
            FilterExpression="address = :a",
            ExpressionAttributeValues={":a": {"S": address}},
        )
        for page in pages:
            for item in page.get("Items", []):
                erased += conditionally(
                    client.update_item,
                    TableName=table,
                    Key={"delivery_id": item["delivery_id"], "event_key": item["event_key"]},
                    UpdateExpression="SET address = :erased",
                    ConditionExpression="address = :a",
                    ExpressionAttributeValues={":erased": {"S": ERASED}, ":a": {"S": address}},
                )
    return erased
