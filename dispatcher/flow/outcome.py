"""What became of one stream record, and the metrics each outcome counts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from dispatcher.model.row import ErrorKind
from dispatcher.notify.delivery_events import DeliveryEvent
from dispatcher.support.observability import metrics

__all__ = ["Outcome", "RecordResult", "emit_metrics"]


class Outcome(StrEnum):
    """What happened to one stream record."""

    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent earlier: bookkeeping finished, nothing re-sent
    CONFIRMED = "confirmed"  # its answer never came; a look-up found the mail taken
    FAILED = "failed"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"
    ECHO = "echo"
    SKIPPED = "skipped"
    STALE = "stale"  # the row changed or went away since this record was written


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record, for metrics, logs and the CLI."""

    outcome: Outcome
    row_id: str | None
    detail: str
    error_kind: ErrorKind | None = None
    latency_seconds: float | None = None
    #: A send of this record went unanswered: the provider may have taken it.
    ambiguous: bool = False
    #: A look-up to settle an earlier unanswered send failed.
    lookup_failed: bool = False
    #: The provider that took a sent mail.
    provider: str | None = None
    #: What an application is told of it (None: nothing to tell, e.g. a skipped echo).
    event: DeliveryEvent | None = None


_METRIC_NAMES = {
    Outcome.SENT: "Sent",
    Outcome.DUPLICATE: "DuplicateSuppressed",
    Outcome.CONFIRMED: "ConfirmedByLookup",
    Outcome.FAILED: "Failed",
    Outcome.DEFERRED: "Deferred",
    Outcome.SCHEDULED: "Scheduled",
    Outcome.ECHO: "SkippedEcho",
    Outcome.SKIPPED: "Skipped",
    Outcome.STALE: "SkippedStale",
}


def emit_metrics(result: RecordResult) -> None:
    """Called on the event loop's thread only: Powertools Metrics is not thread-safe."""
    metrics.add_metric(name=_METRIC_NAMES[result.outcome], unit=MetricUnit.Count, value=1)
    if result.outcome is Outcome.SENT and result.provider is not None:
        # Which provider sent it: Sent_ses rising while Sent_blastengine falls is a failover.
        metrics.add_metric(name=f"Sent_{result.provider}", unit=MetricUnit.Count, value=1)
    category = result.event.category if result.event is not None else None
    if result.outcome is Outcome.SENT and category:
        # Per category (MAIL_CATEGORIES): what the reputation guard counts, in CloudWatch.
        metrics.add_metric(name=f"SentCategory_{category}", unit=MetricUnit.Count, value=1)
    if result.outcome is Outcome.FAILED and result.error_kind is not None:
        metrics.add_metric(name=f"Failed_{result.error_kind.value}", unit=MetricUnit.Count, value=1)
    if result.ambiguous:
        metrics.add_metric(name="AmbiguousSends", unit=MetricUnit.Count, value=1)
    if result.lookup_failed:
        metrics.add_metric(name="LookupFailures", unit=MetricUnit.Count, value=1)
    if result.latency_seconds is not None:
        metrics.add_metric(
            name="ProviderLatency",
            unit=MetricUnit.Milliseconds,
            value=round(result.latency_seconds * 1000, 1),
        )
