"""A bounce as every path records it: a recipient a provider could not reach, of one kind."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from dispatcher.model.delivery_status import DeliveryStatus

__all__ = ["BLASTENGINE_KINDS", "BounceEvent", "BounceType"]


class BounceType(StrEnum):
    """blastengine's bounce kinds (``../shared/BLASTENGINE.md``)."""

    HARDERROR = "HARDERROR"  # permanent: no such user or host (SES: a Permanent bounce)
    SOFTERROR = "SOFTERROR"  # temporary: a full mailbox; may still arrive later (SES: Transient)
    DROP = "DROP"  # the address is on blastengine's stop list
    COMPLAINT = "COMPLAINT"  # SES: the recipient marked the mail as spam

    @property
    def suppresses(self) -> bool:
        return self is not BounceType.SOFTERROR

    @property
    def delivery_status(self) -> DeliveryStatus:
        """What the bounce makes the mail's delivery status (a soft error: it may arrive)."""
        return _STATUSES[self]


_STATUSES = {
    BounceType.HARDERROR: DeliveryStatus.BOUNCED,
    BounceType.SOFTERROR: DeliveryStatus.DELAYED,
    BounceType.DROP: DeliveryStatus.DROPPED,
    BounceType.COMPLAINT: DeliveryStatus.COMPLAINED,
}

#: The kinds blastengine reports (its webhook's and its delivery logs' statuses).
BLASTENGINE_KINDS = (BounceType.HARDERROR, BounceType.SOFTERROR, BounceType.DROP)


@dataclass(frozen=True)
class BounceEvent:
    """One recipient blastengine could not reach."""

    type: BounceType
    at: str  # the event's own time, ISO-8601 with its offset, as blastengine sent it
    address: str  # normalised
    delivery_id: str
    code: str | None = None
    message: str | None = None

    @property
    def key(self) -> str:
        """Stable per event: the same event posted twice has the same key."""
        raw = f"{self.type}\n{self.address}\n{self.at}\n{self.code}"
        return f"{self.at}#{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
