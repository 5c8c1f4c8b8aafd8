"""Delivery statuses and their order: a status only ever moves forward.

``accepted`` is where every sent mail starts (the provider took it). ``delayed`` may still
arrive; ``delivered`` is the receiving server's acceptance; a bounce after delivery
(``bounced``, ``dropped``) or a refusal before it (``rejected``) ends the mail; a complaint
comes last of all (the recipient read it and marked it spam). A report of a lower or equal
rank than the item's changes nothing: a late ``delayed`` after ``delivered``, or the same
event twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FINAL", "DeliveryStatus", "StatusReport"]


class DeliveryStatus(StrEnum):
    """``delivery_status`` on a history item."""

    ACCEPTED = "accepted"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    REJECTED = "rejected"
    COMPLAINED = "complained"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {
    DeliveryStatus.ACCEPTED: 0,
    DeliveryStatus.DELAYED: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.BOUNCED: 3,
    DeliveryStatus.DROPPED: 3,
    DeliveryStatus.REJECTED: 3,
    DeliveryStatus.COMPLAINED: 4,
}
#: Statuses after which no report but a complaint changes the item.
FINAL = frozenset(s for s in DeliveryStatus if s.rank >= DeliveryStatus.DELIVERED.rank)

#: The longest provider response kept (``delivery_detail``).
DETAIL_CHARS = 300


@dataclass(frozen=True)
class StatusReport:
    """What a provider said of one mail to one recipient, at one moment."""

    delivery_id: str
    address: str
    status: DeliveryStatus
    at: str  # ISO-8601, as the provider gave it
    detail: str | None = None  # the SMTP code and text, or the provider's reason
    provider: str | None = None

    @property
    def bounded_detail(self) -> str | None:
        return self.detail[:DETAIL_CHARS] if self.detail else None
