"""What a stream record means: send the row, or skip it (``DESIGN.md``, "Triage").

Pure and I/O-free on purpose: this is the rule that keeps the dispatcher from re-triggering
itself through its own writes, so it is property-tested in isolation.

=====================================================  =============================
record                                                 decision
=====================================================  =============================
INSERT                                                 send
MODIFY, some request attribute changed                 send (edited, or ``revision``)
MODIFY, only bookkeeping changed, new status waiting   skip: the dispatcher's echo
MODIFY, user set ``status`` to anything else/removed   send (explicit re-fire)
MODIFY, nothing of the above changed                   skip
REMOVE                                                 skip
=====================================================  =============================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecordEventName,
)

from dispatcher.model.row import REQUEST_ATTRIBUTES, WAITING_STATUSES, Image, string_attribute

__all__ = ["Decision", "Reason", "triage"]


class Reason(StrEnum):
    """Why a record was sent or skipped; logged and counted."""

    INSERTED = "inserted"
    REQUEST_CHANGED = "request attributes changed"
    STATUS_REFIRED = "status changed by a user"
    ECHO = "dispatcher's own bookkeeping write"
    NO_CHANGE = "no request attribute or status changed"
    REMOVED = "row removed"
    NO_IMAGE = "record carries no new image"


@dataclass(frozen=True)
class Decision:
    """The outcome of triage: ``send`` or not, and why."""

    send: bool
    reason: Reason


def triage(
    event_name: DynamoDBRecordEventName | str | None,
    old_image: Image | None,
    new_image: Image | None,
) -> Decision:
    """Decide what one stream record asks of the dispatcher.

    Example
    -------
    >>> triage("MODIFY", {"to": {"S": "a@x.io"}},
    ...        {"to": {"S": "a@x.io"}, "status": {"S": "failed"}}).send
    False
    """
    name = event_name.value if isinstance(event_name, DynamoDBRecordEventName) else event_name
    if name == "REMOVE":
        return Decision(False, Reason.REMOVED)
    if not new_image:
        return Decision(False, Reason.NO_IMAGE)
    if name == "INSERT":
        return Decision(True, Reason.INSERTED)
    old = old_image or {}
    if any(old.get(attr) != new_image.get(attr) for attr in REQUEST_ATTRIBUTES):
        return Decision(True, Reason.REQUEST_CHANGED)
    if string_attribute(new_image, "status") in WAITING_STATUSES:
        # Only bookkeeping changed and the row is parked: this is our own stamp coming back.
        return Decision(False, Reason.ECHO)
    if new_image.get("status") != old.get("status"):  # any other value, or removed
        return Decision(True, Reason.STATUS_REFIRED)
    return Decision(False, Reason.NO_CHANGE)
