"""Delivery events for applications, on EventBridge: what became of each mail.

The way AWS services tell applications what happened: one event per outcome on the stack's
event bus (``EVENT_BUS_NAME``), source ``mail-dispatcher``, detail-type one of
:data:`DETAIL_TYPES`. An application subscribes with an ordinary rule (to SQS, Lambda, an API
destination) and never polls the history table.

Events are collected while a batch runs and put at its end, ten to a ``PutEvents`` request
(its limit). Publishing never holds up or fails a send: an event EventBridge refuses is
retried once, then counted (metric ``EventsNotPublished``) and logged, and the batch goes on.
Delivery is at least once: a redelivered record, a replayed send, a retried bounce POST
publish the same outcome again. Each event's ``detail.event_id`` is stable (derived from what
it reports, never from when it was published): a consumer de-duplicates on it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from dispatcher.model.row import ErrorKind, RowStatus, string_attribute
from dispatcher.support.observability import logger, metrics

if TYPE_CHECKING:
    from dispatcher.config.settings import Settings
    from dispatcher.model.row import Row
    from dispatcher.model.stamp import FailureStamp
    from dispatcher.storage.store import HistoryEntry

__all__ = [
    "DETAIL_TYPES",
    "SOURCE",
    "DeliveryEvent",
    "EventPublisher",
    "sent_event",
    "stamp_event",
]

SOURCE = "mail-dispatcher"
DETAIL_TYPES = (
    "Mail Sent",
    "Mail Deferred",
    "Mail Failed",
    "Mail Scheduled",
    "Mail Bounced",
    "Mail Suppressed",
    "Mail Delivered",
    "Mail Delayed",
    "Mail Paused",
    "Mail Unsubscribed",
    "Sending Paused",
)
#: PutEvents takes at most ten entries a request.
ENTRIES_PER_REQUEST = 10


@dataclass(frozen=True)
class DeliveryEvent:
    """One outcome of one mail, as an application sees it."""

    detail_type: str
    row_id: str
    at: str  # when it happened (ISO-8601, UTC)
    recipient: str | None = None
    provider: str | None = None
    delivery_id: str | None = None
    error_kind: str | None = None
    reason: str | None = None
    attempts: int | None = None
    retry_at: str | None = None
    expires_at: str | None = None
    #: The mail's category (``Mail Unsubscribed``: the category unsubscribed from).
    category: str | None = None
    #: What makes the outcome itself: the same outcome published twice has the same id.
    identity: tuple[str, ...] = field(default=(), repr=False)

    @property
    def event_id(self) -> str:
        parts = (self.detail_type, self.row_id, *self.identity)
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    def detail(self) -> dict[str, Any]:
        plain = {k: v for k, v in asdict(self).items() if v is not None and k != "identity"}
        plain.pop("detail_type")
        return {"event_id": self.event_id, **plain}


class EventPublisher:
    """Puts delivery events on one bus; thread-safe, one per container."""

    @classmethod
    def from_settings(cls, settings: Settings, client: Any = None) -> EventPublisher | None:
        """The deployment's publisher, or None without ``EVENT_BUS_NAME``."""
        if not settings.event_bus_name:
            return None
        if client is None:
            import boto3

            client = boto3.client("events")
        return cls(client, settings.event_bus_name)

    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name
        self._lock = threading.Lock()
        self._pending: list[DeliveryEvent] = []
        #: Requests and entries put so far (the bench's cost figure counts them).
        self.requests = 0
        self.published = 0

    @property
    def bus_name(self) -> str:
        return self._bus

    def add(self, events: Iterable[DeliveryEvent]) -> None:
        with self._lock:
            self._pending.extend(events)

    def flush(self) -> int:
        """Put what was collected; returns how many were not published (never raises)."""
        with self._lock:
            pending, self._pending = self._pending, []
        lost = 0
        for start in range(0, len(pending), ENTRIES_PER_REQUEST):
            lost += self._put(pending[start : start + ENTRIES_PER_REQUEST])
        if lost:
            metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=lost)
        return lost

    def _put(self, events: list[DeliveryEvent]) -> int:
        entries = [self._entry(e) for e in events]
        for attempt in (1, 2):
            try:
                self.requests += 1
                answer = self._client.put_events(Entries=entries)
            except Exception as exc:  # never a reason to fail a send
                if attempt == 2:
                    logger.warning(
                        "delivery events not published",
                        extra={"events": len(entries), "error": f"{type(exc).__name__}: {exc}"},
                    )
                    return len(entries)
                continue
            results = answer.get("Entries", [])
            failed = [entries[i] for i, r in enumerate(results) if r.get("ErrorCode")]
            self.published += len(entries) - len(failed)
            if not failed:
                return 0
            entries = failed
        logger.warning("delivery events refused by EventBridge", extra={"events": len(entries)})
        return len(entries)

    def _entry(self, event: DeliveryEvent) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": event.detail_type,
            "Detail": json.dumps(event.detail(), separators=(",", ":")),
            "EventBusName": self._bus,
            "Resources": [],
        }


def sent_event(entry: HistoryEntry, left_out: tuple[str, ...] = ()) -> DeliveryEvent:
    """``Mail Sent``: the same delivery is the same event, however often it is told."""
    return DeliveryEvent(
        detail_type="Mail Sent",
        row_id=entry.id,
        at=entry.sent_at,
        recipient=entry.to,
        provider=entry.provider,
        delivery_id=entry.delivery_id,
        attempts=entry.attempts,
        reason=f"left out (suppressed): {', '.join(left_out)}" if left_out else None,
        category=entry.category,
        identity=(entry.provider, str(entry.delivery_id)),
    )


def stamp_event(row: Row, stamp: FailureStamp) -> DeliveryEvent:
    """What a stamp on a row that stays says: scheduled, deferred, suppressed or failed."""
    kind = stamp.error_kind
    if stamp.status is RowStatus.SCHEDULED:
        detail_type = "Mail Scheduled"
    elif stamp.status is RowStatus.DEFERRED:
        detail_type = "Mail Deferred"
    elif kind is ErrorKind.SUPPRESSED:
        detail_type = "Mail Suppressed"
    elif stamp.status is RowStatus.PAUSED:
        detail_type = "Mail Paused"
    else:
        detail_type = "Mail Failed"
    return DeliveryEvent(
        detail_type=detail_type,
        row_id=row.id,
        at=stamp.stamped_at,
        recipient=string_attribute(row.image, "to"),
        error_kind=kind.value if kind else None,
        reason=stamp.last_error,
        attempts=stamp.attempts,
        retry_at=stamp.retry_at,
        category=string_attribute(row.image, "category") or "transactional",
        # The same stamp of the same content (a redelivered record) is the same outcome.
        identity=(row.content_hash, str(stamp.attempts), str(kind)),
    )
