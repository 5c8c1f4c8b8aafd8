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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from dispatcher.attachments import Attachments
from dispatcher.clock import SYSTEM_CLOCK, Clock, Deadline, iso_utc, remaining_time
from dispatcher.delivery_events import EventPublisher, sent_event, stamp_event
from dispatcher.failure_policy import FailurePolicy, FailureStamp
from dispatcher.invocation import Invocation
from dispatcher.message import Message, expiry_of, parse_message
from dispatcher.observability import logger, metrics
from dispatcher.outcome import Outcome, RecordResult, emit_metrics
from dispatcher.providers.base import MailProvider
from dispatcher.providers.deployment import build_providers
from dispatcher.providers.errors import ProviderError
from dispatcher.providers.routing import Routes
from dispatcher.ratelimit import RequestSlots, TokenBucket
from dispatcher.retry import SendFailedError
from dispatcher.row import Row, RowStatus, string_attribute
from dispatcher.send_once import MaybeSentError, OnceSender, Sent
from dispatcher.settings import Settings
from dispatcher.settle import LookupFailed, NotTaken, Settler, Taken, Wait
from dispatcher.shared_limit import LimitTable, SharedBucket
from dispatcher.staging import Staging
from dispatcher.store import HistoryEntry, Store
from dispatcher.suppression import RecipientSuppressedError, SuppressionList
from dispatcher.triage import Reason, triage
from dispatcher.unsettled import Unsettled, message_digests

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

__all__ = ["BOOKKEEPING_RESERVE_SECONDS", "Dispatcher"]

#: Seconds kept free at the end of an invocation for the writes that follow a send.
BOOKKEEPING_RESERVE_SECONDS = 3.0


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
        sender: OnceSender,
        attachments: Attachments,
        settler: Settler,
        suppressions: SuppressionList | None = None,
        events: EventPublisher | None = None,
        limits: Mapping[str, LimitTable] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.settler = settler
        self.limits = dict(limits or {})
        self.store = store
        self.sender = sender
        self.suppressions = suppressions
        self.events = events
        self.staging = Staging.from_settings(settings)
        if self.staging.active:
            logger.warning("staging safety is on: " + self.staging.describe())
        self.attachments = attachments
        self.policy = FailurePolicy.from_settings(settings)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not security)
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
        s3_client: S3Client | None = None,
        ses_client: Any = None,
        events_client: Any = None,
        provider: MailProvider | None = None,
        providers: Mapping[str, MailProvider] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> Dispatcher:
        """Wire the store, the providers the settings name and the idempotency table from
        settings; the clients are injected by tests and the local stack. ``provider``
        replaces every provider with one (tests); ``providers`` replaces some by name."""
        import boto3

        client = dynamodb_client or boto3.client("dynamodb")
        rng = rng or random.Random()  # noqa: S311  (jitter, not security)
        attachments = Attachments(
            bucket=settings.attachments_bucket,
            max_total_bytes=settings.attachments_max_bytes,
            s3_client=s3_client,
        )
        routes, lookups = build_providers(
            settings,
            dynamodb_client=client,
            attachments=attachments,
            clock=clock,
            http_client=http_client,
            ses_client=ses_client,
            providers=providers,
        )
        if provider is not None:
            routes = Routes.single(provider)
        settler = Settler(
            lookups,
            delay_seconds=settings.lookup_delay_seconds,
            request_timeout=settings.request_timeout_seconds,
            clock=clock,
        )
        sender = OnceSender(
            routes=routes,
            persistence_store=DynamoDBPersistenceLayer(
                table_name=settings.idempotency_table_name, boto3_client=client
            ),
            expires_after_seconds=settings.idempotency_expiry_seconds,
            request_timeout=settings.request_timeout_seconds,
            history_retention_days=settings.history_retention_days,
            clock=clock,
            rng=rng,
        )
        store = Store(
            send_table=settings.send_table_name,
            history_table=settings.history_table_name,
            boto3_client=client,
        )
        suppressions = (
            SuppressionList(table=settings.suppression_table_name, boto3_client=client)
            if settings.suppression_table_name
            else None
        )
        limits = (
            {
                name: LimitTable(client, settings.rate_limit_table_name, key=name)
                for name in {*routes.every(), *lookups}
            }
            if settings.rate_limit_table_name
            else {}
        )
        return cls(
            settings=settings,
            store=store,
            sender=sender,
            attachments=attachments,
            settler=settler,
            suppressions=suppressions,
            events=settings.event_publisher(events_client),
            limits=limits,
            clock=clock,
            rng=rng,
        )

    def handle_batch(self, event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
        """Process one stream batch and return Lambda's partial batch response."""
        invocation = Invocation(
            deadline=Deadline.from_context(
                remaining_time(context), self._clock, reserve=BOOKKEEPING_RESERVE_SECONDS
            ),
            open_bucket=partial(self._bucket, expected=len(event.get("Records") or [])),
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
            emit_metrics(result)
            invocation.results.append(result)
            return result.outcome.value

        try:
            response = async_process_partial_response(
                event=event,
                record_handler=record_handler,
                processor=self._processor,
                context=context,
            )
        finally:
            invocation.release()
            metrics.add_metric(
                name="RateLimitWait",
                unit=MetricUnit.Milliseconds,
                value=round(invocation.waited_seconds() * 1000, 1),
            )
            if self.events is not None:  # never fails the batch (EventPublisher.flush)
                self.events.add(r.event for r in invocation.results if r.event is not None)
                self.events.flush()
        self.last_results = invocation.results
        return response

    def _bucket(self, provider: str, *, expected: int) -> RequestSlots:
        """``provider``'s account limit, shared with every invocation when a limit table is
        set; without one (tests, one-off runs), a budget of this invocation's own."""
        rate, clock = self.settings.provider_rate(provider), self._clock
        limit = self.limits.get(provider)
        if limit is None:
            return TokenBucket(rate=rate, clock=clock)
        return SharedBucket(table=limit, rate=rate, clock=clock, expected=expected)

    def process_record(self, record: DynamoDBRecord, invocation: Invocation) -> RecordResult:
        """Run one record end to end; raises only for infrastructure errors (to be retried)."""
        stream = record.raw_event.get("dynamodb", {})
        row_id = _row_id(record)
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
            result = self._dispatch(Row.from_image(row_id, stream["NewImage"]), invocation)
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

    def _dispatch(self, row: Row, invocation: Invocation) -> RecordResult:
        # Before step 1: a record can be older than the row (a redelivery after the row was
        # sent, or an INSERT whose row was edited or cancelled before this batch ran).
        # Sending it would send content nobody wants any more.
        current = self.store.get_row(row.id)
        if current is None:
            return RecordResult(Outcome.STALE, row.id, "row is gone (sent or cancelled)")
        if current.request != row.request:
            return RecordResult(
                Outcome.STALE, row.id, "row was edited since; its own record sends the new content"
            )

        # Step 1: validate; a malformed row is stamped failed/invalid and never reaches the API.
        now, prior = self._clock.now(), row.prior_attempts
        schedule: FailureStamp | None = None
        try:
            parsed = parse_message(
                row,
                default_from_email=self.settings.default_from_email,
                default_from_name=self.settings.default_from_name,
                now=now,
            )
            # Step 2: a future send_after parks the row for the sweeper.
            if isinstance(parsed, Message) and parsed.send_after and parsed.send_after > now:
                schedule = self.policy.scheduled(parsed.send_after, prior=prior, now=now)
        except Exception as exc:
            # A bug met content it did not expect. Retrying the record would meet it again
            # until the mapping gave up, leaving the row with no status: it fails, with why.
            logger.exception("the row's content could not be handled")
            parsed = [f"row: could not be handled ({type(exc).__name__}: {exc}); please report"]
        # A send of this row that may have been taken stays named on every stamp until a
        # look-up settles it (DESIGN.md, "When the provider's answer never came").
        unsettled = current.unsettled
        if isinstance(parsed, list):
            stamp = self.policy.invalid(parsed, prior=prior, now=now)
            return self._write(row, stamp, unsettled=unsettled)
        if schedule is not None:
            return self._write(row, schedule, unsettled=unsettled)

        # Before anything is sent again: did the provider take the unanswered send?
        settled: str | None = None
        if unsettled is not None:
            verdict = self.settler.settle(
                unsettled, slots=invocation.slots, deadline=invocation.deadline
            )
            if isinstance(verdict, Taken):
                result = self._confirmed(row, parsed, unsettled, verdict)
                if result is not None:
                    return result
            elif not isinstance(verdict, NotTaken):
                return self._unsettled(row, unsettled, verdict, prior)
            else:
                settled = iso_utc(unsettled.opened_at)
            unsettled = None

        # A row not sent by its expires_at is never sent (asked only now: a send that may
        # have been taken is settled first, and goes to the history if it was).
        if parsed.expires_at is not None and parsed.expires_at <= now:
            stamp = self.policy.expired(parsed.expires_at, prior=prior, now=now)
            return self._write(row, stamp, unsettled=None)

        # A staging deployment's recipient rules, before any API call (README, "Staging
        # safety"): a `to` outside the allowlist blocks the row; REDIRECT_ALL_TO replaces all.
        staged = self.staging.apply(parsed)
        if isinstance(staged, str):
            stamp = self.policy.blocked(staged, prior=prior, now=now)
            return self._write(row, stamp, unsettled=None)
        parsed = staged

        # Still step 1: the attachments exist and fit (an S3 lookup, so outside the parser).
        try:
            resolved = self.attachments.resolve(parsed)
        except ProviderError as exc:  # no bucket, or no permission on it: `config`
            return self._write(row, self._after_error(exc, prior, 0), unsettled=None)
        if isinstance(resolved, list):
            stamp = self.policy.invalid(resolved, prior=prior, now=now)
            return self._write(row, stamp, unsettled=None)
        parsed = resolved

        # Steps 2 and 3: send once, under the idempotency record keyed on id + content. No
        # mail to an address that bounced for good: the suppression screen runs inside, only
        # if this content was not sent already (a replay is finished, not failed).
        try:
            sent = self.sender.send(
                parsed,
                slots=invocation.slots,
                deadline=invocation.deadline,
                prior=prior,
                budget=self.policy.budget(prior),
                screen=self.suppressions.screen if self.suppressions is not None else None,
                settled=settled,
            )
        except RecipientSuppressedError as exc:
            stamp = self.policy.suppressed(exc.reason, prior=prior, now=now)
            return self._write(row, stamp, unsettled=None)
        except SendFailedError as exc:
            stamp = self._after_error(exc.error, prior, exc.attempts)
            return self._write(row, stamp, unsettled=None)
        except MaybeSentError as exc:
            stamp = self.policy.ambiguous(exc.unsettled, attempts=exc.attempts, now=now)
            return replace(self._write(row, stamp, unsettled=exc.unsettled), ambiguous=True)
        return self._record_success(sent.message, row, sent)

    def _confirmed(
        self, row: Row, message: Message, unsettled: Unsettled, taken: Taken
    ) -> RecordResult | None:
        """The look-up found the unanswered send taken: its history item, confirmed by
        look-up. The row is moved if it still holds that mail; if a person has since edited
        it into another mail, that one is still to be sent (None: go on)."""
        found = taken.found
        entry = HistoryEntry(
            id=row.id,
            sent_at=self.store.recorded_at(row.id, found.delivery_id) or iso_utc(found.taken_at),
            provider=taken.provider,
            delivery_id=found.delivery_id,
            to=unsettled.to,
            subject=unsettled.subject or message.subject,
            attempts=row.attempts,
            content_hash=unsettled.content_hash,
            expires_at=self.sender.history_expiry(found.taken_at),
            cc_count=len(message.cc),
            bcc_count=len(message.bcc),
            confirmed_by="lookup",
        )
        same = message.to == unsettled.to and bool(
            set(message_digests(message)) & set(unsettled.digests)
        )
        if not same:
            self.store.record_history(entry)
            logger.info(
                "an earlier send was taken; the row's edited content is sent as a new mail",
                extra={"delivery_id": found.delivery_id},
            )
            return None
        deleted = self._move(entry, row, replayed=False)
        kept = "" if deleted else "; the row changed meanwhile and was kept"
        return RecordResult(
            Outcome.CONFIRMED,
            row.id,
            f"{taken.provider} had taken it as delivery {found.delivery_id} (confirmed by "
            f"look-up); not sent again{kept}",
            event=sent_event(entry),
        )

    def _move(self, entry: HistoryEntry, row: Row, *, replayed: bool) -> bool:
        """Step 4: the history item and the delete, in one transaction; True if deleted.

        A row that changed meanwhile is kept for its own record to send, unless the change
        is a re-fire alone (``revision`` bumped, ``fired_at`` set: the sweeper's, the CLI's,
        the console's), which asked for exactly the mail that just went out. Left, its
        record would send it a second time (or, after a look-up, record it twice).
        """
        if self.store.record_sent(entry, row, replayed=replayed):
            return True
        current = self.store.get_row(row.id)
        if current is None or current.fired_at is None:
            return current is None
        same = {k: v for k, v in current.request.items() if k != "revision"} == {
            k: v for k, v in row.request.items() if k != "revision"
        }
        return same and self.store.delete_answered_refire(current)

    def _unsettled(
        self, row: Row, unsettled: Unsettled, verdict: Wait | LookupFailed, prior: int
    ) -> RecordResult:
        """Not sent: too early to look up, or the look-up failed. The row keeps waiting."""
        now = self._clock.now()
        if isinstance(verdict, Wait):
            stamp = self.policy.ambiguous(unsettled, attempts=prior, now=now)
            return self._write(row, stamp, unsettled=unsettled)
        stamp = self.policy.lookup_failed(
            unsettled, verdict.error, prior=prior, now=now, rng=self._rng
        )
        return replace(self._write(row, stamp, unsettled=unsettled), lookup_failed=True)

    def _record_success(self, message: Message, row: Row, sent: Sent) -> RecordResult:
        """Step 4: history item and delete, in one transaction."""
        result = sent.result
        sent_at = result["sent_at"]
        if sent.replayed:  # it may have been recorded already, under another key (store)
            sent_at = self.store.recorded_at(message.id, result["delivery_id"]) or sent_at
        entry = HistoryEntry(
            id=message.id,
            sent_at=sent_at,
            provider=result["provider"],
            delivery_id=result["delivery_id"],
            to=message.to,
            subject=message.subject,
            attempts=int(result["attempts"]),
            content_hash=message.content_hash,
            expires_at=result.get("expires_at") or self.sender.history_expiry(self._clock.now()),
            cc_count=len(message.cc),
            bcc_count=len(message.bcc),
            left_out=message.left_out,
            original_recipients=message.original_recipients,
        )
        deleted = self._move(entry, row, replayed=sent.replayed)
        kept = "" if deleted else "; the row changed meanwhile and was kept"
        event = sent_event(entry, left_out=message.left_out)
        if sent.replayed:
            return RecordResult(
                Outcome.DUPLICATE,
                message.id,
                f"already sent as delivery {result['delivery_id']}; not sent again{kept}",
                event=event,
            )
        return RecordResult(
            Outcome.SENT,
            message.id,
            f"sent through {result['provider']} as delivery {result['delivery_id']}{kept}",
            latency_seconds=sent.latency_seconds,
            provider=result["provider"],
            event=event,
        )

    def _after_error(self, error: ProviderError, prior: int, attempts: int) -> FailureStamp:
        return self.policy.after_error(
            error, prior=prior, attempts=attempts, now=self._clock.now(), rng=self._rng
        )

    def _write(self, row: Row, stamp: FailureStamp, *, unsettled: Unsettled | None) -> RecordResult:
        """Step 5 (and 2's scheduling): stamp a row that stays, conditional on the content
        that was tried. ``unsettled`` is what the row must keep of a send that may have been
        taken (None: nothing, or settled now); every stamp says, so none forgets it."""
        stamp = replace(stamp, unsettled=unsettled)
        if (
            unsettled is None
            and stamp.retry_at is not None
            and (expiry := expiry_of(row)) is not None
        ):
            # A wait never outlasts the row's life: the sweeper comes back by expires_at to
            # expire it (a row waiting on a look-up waits for it, whatever its expiry). Only
            # a row the parser passed waits, so its expiry converts to UTC.
            stamp = replace(stamp, retry_at=min(stamp.retry_at, iso_utc(expiry)))
        parked = (row.status, row.retry_at) == (stamp.status.value, stamp.retry_at)
        if stamp.status is RowStatus.SCHEDULED and parked and unsettled == row.unsettled:
            # Already parked with this time: rewriting identical values would only echo.
            return RecordResult(Outcome.SCHEDULED, row.id, f"already {stamp.describe()}")
        if not self.store.stamp(row, stamp):
            # Edited or removed while we worked: its own record decides its fate.
            return RecordResult(
                Outcome.STALE,
                row.id,
                f"not stamped {stamp.status.value}: the row changed meanwhile",
                error_kind=stamp.error_kind,
            )
        return RecordResult(
            Outcome(stamp.status.value),
            row.id,
            stamp.describe(),
            error_kind=stamp.error_kind,
            event=stamp_event(row, stamp),
        )


def _row_id(record: DynamoDBRecord) -> str | None:
    return string_attribute(record.raw_event.get("dynamodb", {}).get("Keys", {}), "id")
