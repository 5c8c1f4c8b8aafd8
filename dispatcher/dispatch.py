"""The record flow: triage, validate, send exactly once, then move or stamp the row.

``DESIGN.md``, "Sending", is the contract; each step below names its number there.

Concurrency (``DESIGN.md``, "Rate limits"): Powertools' ``AsyncBatchProcessor`` gathers one
coroutine per record; each runs the synchronous, idempotent send on a bounded thread pool
(Powertools Idempotency wraps synchronous functions only), and records of the same row id
take a per-id lock first, so they run one after another in stream order. The partial batch
response stays Powertools'.
"""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypedDict

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

from dispatcher.clock import SYSTEM_CLOCK, Clock, Deadline, RemainingTime, iso_utc
from dispatcher.credentials import credentials_loader
from dispatcher.message import (
    ErrorKind,
    Image,
    Message,
    RowStatus,
    parse_message,
    request_attributes,
)
from dispatcher.observability import logger, metrics
from dispatcher.providers.base import MailProvider
from dispatcher.providers.blastengine import BlastengineClient
from dispatcher.providers.errors import InvalidMessageError, TransientError
from dispatcher.ratelimit import TokenBucket
from dispatcher.retry import RetryPolicy, SendFailedError, deferral_delay, send_with_retries
from dispatcher.settings import Settings
from dispatcher.store import FailureStamp, HistoryEntry, Store
from dispatcher.triage import Reason, triage

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["BOOKKEEPING_RESERVE_SECONDS", "Dispatcher", "Outcome", "RecordResult"]

#: Seconds kept free at the end of an invocation for the writes that follow a send.
BOOKKEEPING_RESERVE_SECONDS = 3.0
#: Stable idempotency key prefix, so a refactor of this module does not reset every key.
IDEMPOTENCY_KEY_PREFIX = "dispatcher.send"


class Outcome(StrEnum):
    """What happened to one stream record."""

    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent earlier: bookkeeping finished, nothing re-sent
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


class SendResult(TypedDict):
    """What the idempotency store keeps for a sent message (its ``data``)."""

    provider: str
    delivery_id: str | None
    sent_at: str
    attempts: int


@dataclass
class _SendProgress:
    """Side channel out of the idempotent function.

    ``ran`` tells a fresh send from a replayed one; ``result`` survives a failure to save the
    idempotency record after a successful send, so bookkeeping still completes.
    """

    ran: bool = False
    result: SendResult | None = None
    latency_seconds: float | None = None


@dataclass
class _Invocation:
    deadline: Deadline
    bucket: TokenBucket
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    results: list[RecordResult] = field(default_factory=list)


class Dispatcher:
    """Processes DynamoDB stream batches from the send table.

    Built once per container (see :mod:`dispatcher.handler`); :meth:`handle_batch` is called
    per invocation.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        provider: MailProvider,
        persistence_store: DynamoDBPersistenceLayer,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not security)
        self._idempotency = IdempotencyConfig(
            expires_after_seconds=settings.idempotency_expiry_seconds,
            raise_on_no_idempotency_key=True,
        )
        # Wraps the provider send alone: bookkeeping must sit outside, because Powertools
        # deletes the idempotency record when the wrapped function raises.
        self._send_once = idempotent_function(
            self._send,
            data_keyword_argument="key",
            persistence_store=persistence_store,
            config=self._idempotency,
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )
        self._processor = AsyncBatchProcessor(
            event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
        )
        #: The outcomes of the last batch (records that raised are not in it), for local tools.
        self.last_results: list[RecordResult] = []
        self._pool = ThreadPoolExecutor(
            max_workers=settings.send_concurrency, thread_name_prefix="send"
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        dynamodb_client: DynamoDBClient | None = None,
        http_client: httpx.Client | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> Dispatcher:
        """Wire the store, the blastengine client and the idempotency table from settings."""
        import boto3

        client = dynamodb_client or boto3.client("dynamodb")
        return cls(
            settings=settings,
            store=Store(
                send_table=settings.send_table_name,
                history_table=settings.history_table_name,
                boto3_client=client,
            ),
            provider=BlastengineClient(
                base_url=settings.blastengine_base_url,
                credentials=credentials_loader(settings),
                http_client=http_client,
                max_connections=settings.send_concurrency,
            ),
            persistence_store=DynamoDBPersistenceLayer(
                table_name=settings.idempotency_table_name, boto3_client=client
            ),
            clock=clock,
            rng=rng,
        )

    def handle_batch(self, event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
        """Process one stream batch and return Lambda's partial batch response."""
        self._idempotency.register_lambda_context(context)
        invocation = _Invocation(
            deadline=Deadline.from_context(
                _remaining(context), self._clock, reserve=BOOKKEEPING_RESERVE_SECONDS
            ),
            bucket=TokenBucket(rate=self.settings.rate_limit_rps, clock=self._clock),
        )

        async def record_handler(record: DynamoDBRecord) -> str:
            lane = _row_id(record) or record.event_id or ""
            lock = invocation.locks.setdefault(lane, asyncio.Lock())
            async with lock:  # same row id: one at a time, in stream order
                loop = asyncio.get_running_loop()
                try:
                    result = await loop.run_in_executor(
                        self._pool, self.process_record, record, invocation
                    )
                except Exception as exc:
                    # Reported as a batch item failure: Lambda redelivers it; the row waits.
                    logger.warning(
                        "record left for retry",
                        extra={"row_id": _row_id(record), "error": f"{type(exc).__name__}: {exc}"},
                    )
                    metrics.add_metric(name="RetriedRecords", unit=MetricUnit.Count, value=1)
                    raise
            _emit_metrics(result)
            invocation.results.append(result)
            return result.outcome.value

        response = async_process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=self._processor,
            context=context,
        )
        self.last_results = invocation.results
        return response

    def process_record(self, record: DynamoDBRecord, invocation: _Invocation) -> RecordResult:
        """Run one record end to end; raises only for infrastructure errors (to be retried)."""
        row_id = _row_id(record)
        stream = record.raw_event.get("dynamodb", {})
        logger.thread_safe_append_keys(row_id=row_id)
        try:
            decision = triage(
                record.raw_event.get("eventName"), stream.get("OldImage"), stream.get("NewImage")
            )
            if not decision.send:
                outcome = Outcome.ECHO if decision.reason is Reason.ECHO else Outcome.SKIPPED
                logger.info(
                    "skipped",
                    extra={"outcome": outcome.value, "trigger": decision.reason.value},
                )
                return RecordResult(outcome, row_id, decision.reason.value)
            if row_id is None:
                logger.error("record has no string id key; nothing to send or stamp")
                return RecordResult(Outcome.SKIPPED, None, "record has no string id key")
            result = self._dispatch(row_id, stream["NewImage"], invocation)
            logger.info(
                result.detail,
                extra={
                    "outcome": result.outcome.value,
                    "error_kind": result.error_kind,
                    "trigger": decision.reason.value,
                },
            )
            return result
        finally:
            logger.thread_safe_remove_keys(["row_id"])

    def _dispatch(self, row_id: str, image: Image, invocation: _Invocation) -> RecordResult:
        # A record can be older than the row: a redelivery after the row was sent, or an
        # INSERT whose row was edited or cancelled before this batch ran. Sending it would
        # send content nobody wants any more.
        current = self.store.get_row(row_id)
        if current is None:
            return RecordResult(Outcome.STALE, row_id, "row is gone (sent or cancelled)")
        if request_attributes(current) != request_attributes(image):
            return RecordResult(
                Outcome.STALE, row_id, "row was edited since; its own record sends the new content"
            )

        # Step 1: validate; a malformed row is stamped failed/invalid and never reaches the API.
        parsed = parse_message(
            row_id,
            image,
            default_from_email=self.settings.default_from_email,
            default_from_name=self.settings.default_from_name,
        )
        if isinstance(parsed, list):
            return self._stamp(
                row_id,
                image,
                RowStatus.FAILED,
                _prior_attempts(image),
                "; ".join(parsed),
                ErrorKind.INVALID,
            )

        # Step 2: a future send_after parks the row for the sweeper.
        now = self._clock.now()
        if parsed.send_after is not None and parsed.send_after > now:
            return self._schedule(row_id, image, parsed)

        prior = _prior_attempts(image)
        budget = max(
            1, min(self.settings.attempts_per_invocation, self.settings.max_attempts - prior)
        )
        progress = _SendProgress()
        try:
            result: SendResult = self._send_once(
                key={"id": row_id, "content_hash": parsed.content_hash},
                message=parsed,
                invocation=invocation,
                budget=budget,
                prior=prior,
                progress=progress,
            )
        except SendFailedError as exc:
            return self._stamp_failure(row_id, image, exc, prior)
        except IdempotencyAlreadyInProgressError:
            # An earlier delivery of this record died mid-send (killed, or timed out): its
            # idempotency record stays "in progress" until that invocation's deadline. Lambda
            # does not redeliver a shard's batch while an invocation of it still runs, so the
            # holder is gone; retrying through batch item failures would only meet the same
            # record until the mapping's retries ran out, leaving the row with no status. So
            # it counts as one transient attempt: deferred, and the sweeper's re-fire (a new
            # `revision`, hence a new idempotency key) sends it. Whether the dead send reached
            # the provider is unknowable: the window of README, "Faults".
            interrupted = TransientError("an earlier delivery of this record stopped mid-send")
            return self._stamp_failure(row_id, image, SendFailedError(interrupted, 1), prior)
        except IdempotencyPersistenceLayerError:
            if progress.result is None:
                raise  # nothing was sent; let Lambda retry the record
            logger.warning("sent, but the idempotency record was not saved; finishing bookkeeping")
            result = progress.result
        return self._record_success(parsed, image, result, progress)

    def _send(
        self,
        *,
        key: dict[str, str],
        message: Message,
        invocation: _Invocation,
        budget: int,
        prior: int,
        progress: _SendProgress,
    ) -> SendResult:
        """Step 3, under Powertools Idempotency keyed on ``key`` (row id + content hash)."""
        progress.ran = True
        delivery = send_with_retries(
            self.provider,
            message,
            bucket=invocation.bucket,
            deadline=invocation.deadline,
            clock=self._clock,
            policy=RetryPolicy(
                max_attempts=budget,
                request_timeout=self.settings.request_timeout_seconds,
                rng=self._rng,
            ),
        )
        progress.latency_seconds = delivery.latency_seconds
        progress.result = SendResult(
            provider=self.provider.name,
            delivery_id=delivery.delivery_id,
            sent_at=iso_utc(self._clock.now()),
            attempts=prior + delivery.attempts,
        )
        return progress.result

    def _record_success(
        self, message: Message, image: Image, result: SendResult, progress: _SendProgress
    ) -> RecordResult:
        """Step 4: history item and delete, in one transaction."""
        sent_at = _parse_iso(result["sent_at"])
        retention = timedelta(days=self.settings.history_retention_days)
        entry = HistoryEntry(
            id=message.id,
            sent_at=result["sent_at"],
            provider=result["provider"],
            delivery_id=result["delivery_id"],
            to=message.to,
            subject=message.subject,
            attempts=int(result["attempts"]),
            content_hash=message.content_hash,
            expires_at=int((sent_at + retention).timestamp()),
            cc_count=len(message.cc),
            bcc_count=len(message.bcc),
        )
        replayed = not progress.ran
        deleted = self.store.record_sent(entry, image, replayed=replayed)
        kept = "" if deleted else "; the row changed meanwhile and was kept"
        if replayed:
            return RecordResult(
                Outcome.DUPLICATE,
                message.id,
                f"already sent as delivery {result['delivery_id']}; not sent again{kept}",
            )
        return RecordResult(
            Outcome.SENT,
            message.id,
            f"sent as delivery {result['delivery_id']}{kept}",
            latency_seconds=progress.latency_seconds,
        )

    def _stamp_failure(
        self, row_id: str, image: Image, exc: SendFailedError, prior: int
    ) -> RecordResult:
        """Step 5: permanent errors fail the row; transient ones defer it until the limit."""
        error = exc.error
        attempts = prior if isinstance(error, InvalidMessageError) else prior + exc.attempts
        if isinstance(error, TransientError) and attempts < self.settings.max_attempts:
            delay = deferral_delay(
                attempts,
                attempts_per_invocation=self.settings.attempts_per_invocation,
                retry_after=getattr(error, "retry_after", None),
                rng=self._rng,
                base=self.settings.deferral_base_seconds,
            )
            retry_at = iso_utc(self._clock.now() + timedelta(seconds=delay))
            return self._stamp(
                row_id,
                image,
                RowStatus.DEFERRED,
                attempts,
                error.message,
                error.kind,
                error.http_status,
                retry_at,
            )
        message = error.message
        if isinstance(error, TransientError):
            message = f"gave up after {attempts} attempts: {message}"
        return self._stamp(
            row_id, image, RowStatus.FAILED, attempts, message, error.kind, error.http_status
        )

    def _schedule(self, row_id: str, image: Image, message: Message) -> RecordResult:
        assert message.send_after is not None
        retry_at = iso_utc(message.send_after)
        parked = _string(image, "status"), _string(image, "retry_at")
        if parked == (RowStatus.SCHEDULED.value, retry_at):
            # Already parked with this time: rewriting identical values would only echo.
            return RecordResult(Outcome.SCHEDULED, row_id, f"already scheduled for {retry_at}")
        stamp = FailureStamp(
            RowStatus.SCHEDULED,
            _prior_attempts(image),
            iso_utc(self._clock.now()),
            retry_at=retry_at,
        )
        if not self.store.stamp(row_id, image, stamp):
            return RecordResult(Outcome.STALE, row_id, "row changed before it could be scheduled")
        return RecordResult(Outcome.SCHEDULED, row_id, f"scheduled for {retry_at}")

    def _stamp(
        self,
        row_id: str,
        image: Image,
        status: RowStatus,
        attempts: int,
        reason: str,
        kind: ErrorKind,
        http_status: int | None = None,
        retry_at: str | None = None,
    ) -> RecordResult:
        stamp = FailureStamp(
            status,
            attempts,
            iso_utc(self._clock.now()),
            last_error=reason,
            error_kind=kind,
            http_status=http_status,
            retry_at=retry_at,
        )
        if not self.store.stamp(row_id, image, stamp):
            # Edited or removed while we worked: its own record decides its fate.
            return RecordResult(
                Outcome.STALE,
                row_id,
                f"not stamped {status.value}: the row changed meanwhile",
                error_kind=kind,
            )
        outcome = Outcome.DEFERRED if status is RowStatus.DEFERRED else Outcome.FAILED
        until = f" until {retry_at}" if retry_at else ""
        return RecordResult(
            outcome, row_id, f"{status.value}{until} ({kind.value}): {reason}", error_kind=kind
        )


def _emit_metrics(result: RecordResult) -> None:
    """Called on the event loop's thread only: Powertools Metrics is not thread-safe."""
    names = {
        Outcome.SENT: "Sent",
        Outcome.DUPLICATE: "DuplicateSuppressed",
        Outcome.FAILED: "Failed",
        Outcome.DEFERRED: "Deferred",
        Outcome.SCHEDULED: "Scheduled",
        Outcome.ECHO: "SkippedEcho",
        Outcome.SKIPPED: "Skipped",
        Outcome.STALE: "SkippedStale",
    }
    metrics.add_metric(name=names[result.outcome], unit=MetricUnit.Count, value=1)
    if result.outcome is Outcome.FAILED and result.error_kind is not None:
        metrics.add_metric(name=f"Failed_{result.error_kind.value}", unit=MetricUnit.Count, value=1)
    if result.latency_seconds is not None:
        metrics.add_metric(
            name="ProviderLatency",
            unit=MetricUnit.Milliseconds,
            value=round(result.latency_seconds * 1000, 1),
        )


def _row_id(record: DynamoDBRecord) -> str | None:
    key = record.raw_event.get("dynamodb", {}).get("Keys", {}).get("id", {})
    value = key.get("S") if isinstance(key, dict) else None
    return value if isinstance(value, str) else None


def _string(image: Image, name: str) -> str | None:
    value = image.get(name, {}).get("S")
    return value if isinstance(value, str) else None


def _prior_attempts(image: Image) -> int:
    """Attempts already spent: carried while the row is deferred, fresh after a re-fire."""
    if _string(image, "status") != RowStatus.DEFERRED:
        return 0
    try:
        return max(0, int(image.get("attempts", {}).get("N", "0")))
    except ValueError:
        return 0


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _NoDeadline:
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _remaining(context: Any) -> RemainingTime:
    """The Lambda context, or a 15-minute stand-in when there is none (plain scripts)."""
    return context if hasattr(context, "get_remaining_time_in_millis") else _NoDeadline()
