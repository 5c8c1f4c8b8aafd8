"""What a bounce recorded for the first time tells: operators, through its metrics; the
applications, through a ``Mail Bounced`` delivery event on its history item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dispatcher.bounces.event import BounceEvent
from dispatcher.notify.delivery_events import DeliveryEvent
from dispatcher.support.observability import metrics

__all__ = ["bounced_event", "count_new_bounce", "paused_event"]


def count_new_bounce(event: BounceEvent) -> None:
    """The metrics of a bounce recorded for the first time, whichever provider reported it:
    ``Bounced`` (the bounce-share alarm's numerator) and ``Bounced_<type>``. A redelivered
    event (:attr:`~dispatcher.bounces.ledger.Applied.new` False) is not counted again."""
    metrics.add_metric(name="Bounced", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Bounced_{event.type}", unit=MetricUnit.Count, value=1)


def bounced_event(event: BounceEvent, history: Mapping[str, Any]) -> DeliveryEvent:
    return DeliveryEvent(
        detail_type="Mail Bounced",
        row_id=str(history["id"]["S"]),
        at=event.at,
        recipient=event.address,
        provider=history.get("provider", {}).get("S"),
        delivery_id=event.delivery_id,
        error_kind=event.type.value,
        reason=event.message or event.code,
        identity=(event.delivery_id, event.key),
    )


def paused_event(category: str, reason: str, at: str) -> DeliveryEvent:
    """``Sending Paused``: the reputation guard held a category's new sends back (``row_id``
    is empty: a pause belongs to no row)."""
    return DeliveryEvent(
        detail_type="Sending Paused",
        row_id="",
        at=at,
        category=category,
        reason=reason,
        identity=(category, at),
    )
