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

from dispatcher.config.settings import Settings
from dispatcher.flow.bookkeeping import Bookkeeping
from dispatcher.flow.failure_policy import FailurePolicy
from dispatcher.flow.invocation import Invocation
from dispatcher.flow.outcome import Outcome, RecordResult, emit_metrics
from dispatcher.flow.triage import Reason, triage
from dispatcher.model.message import Message, parse_message
from dispatcher.model.row import Row, string_attribute
from dispatcher.model.stamp import FailureStamp
from dispatcher.notify.delivery_events import EventPublisher
from dispatcher.once.send import MaybeSentError, OnceSender, SendTerms
from dispatcher.once.settle import NotTaken, Settler, Taken
from dispatcher.pacing.account_limit import LimitTable, SharedBucket
from dispatcher.pacing.invocation_bucket import RequestSlots, TokenBucket
from dispatcher.pacing.retry import SendFailedError
from dispatcher.providers.attachments import Attachments
from dispatcher.providers.base import MailProvider
from dispatcher.providers.deployment import build_providers
from dispatcher.providers.errors import ProviderError
from dispatcher.providers.routing import Routes
from dispatcher.recipients.staging import Staging
from dispatcher.recipients.suppression import RecipientSuppressedError, SuppressionList
from dispatcher.storage.store import Store
from dispatcher.support.clock import SYSTEM_CLOCK, Clock, Deadline, iso_utc, remaining_time
from dispatcher.support.observability import logger, metrics

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
        self.books = Bookkeeping(
            store=store, sender=sender, policy=self.policy, clock=clock, rng=self._rng
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
            events=EventPublisher.from_settings(settings, events_client),
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
            clock=self._clock,
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
            return self.books.keep(row, stamp, unsettled=unsettled)
        if schedule is not None:
            return self.books.keep(row, schedule, unsettled=unsettled)

        # Before anything is sent again: did the provider take the unanswered send?
        settled: str | None = None
        if unsettled is not None:
            verdict = self.settler.settle(
                unsettled, slots=invocation.slots, deadline=invocation.deadline
            )
            if isinstance(verdict, Taken):
                result = self.books.confirmed(row, parsed, unsettled, verdict)
                if result is not None:
                    return result
            elif not isinstance(verdict, NotTaken):
                return self.books.await_lookup(row, unsettled, verdict, prior)
            else:
                settled = iso_utc(unsettled.opened_at)
            unsettled = None

        # A row not sent by its expires_at is never sent (asked only now: a send that may
        # have been taken is settled first, and goes to the history if it was).
        if parsed.expires_at is not None and parsed.expires_at <= now:
            stamp = self.policy.expired(parsed.expires_at, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=None)

        # A staging deployment's recipient rules, before any API call (README, "Staging
        # safety"): a `to` outside the allowlist blocks the row; REDIRECT_ALL_TO replaces all.
        staged = self.staging.apply(parsed)
        if isinstance(staged, str):
            stamp = self.policy.blocked(staged, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=None)
        parsed = staged

        # Still step 1: the attachments exist and fit (an S3 lookup, so outside the parser).
        try:
            resolved = self.attachments.resolve(parsed)
        except ProviderError as exc:  # no bucket, or no permission on it: `config`
            return self.books.keep(row, self.books.after_error(exc, prior, 0), unsettled=None)
        if isinstance(resolved, list):
            stamp = self.policy.invalid(resolved, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=None)
        parsed = resolved

        # Steps 2 and 3: send once, under the idempotency record keyed on id + content. No
        # mail to an address that bounced for good: the suppression screen runs inside, only
        # if this content was not sent already (a replay is finished, not failed).
        try:
            terms = SendTerms(
                slots=invocation.slots,
                deadline=invocation.deadline,
                prior=prior,
                budget=self.policy.budget(prior),
                screen=self.suppressions.screen if self.suppressions is not None else None,
                settled=settled,
            )
            sent = self.sender.send(parsed, terms)
        except RecipientSuppressedError as exc:
            stamp = self.policy.suppressed(exc.reason, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=None)
        except SendFailedError as exc:
            stamp = self.books.after_error(exc.error, prior, exc.attempts)
            return self.books.keep(row, stamp, unsettled=None)
        except MaybeSentError as exc:
            stamp = self.policy.ambiguous(exc.unsettled, attempts=exc.attempts, now=now)
            return replace(self.books.keep(row, stamp, unsettled=exc.unsettled), ambiguous=True)
        return self.books.sent(row, sent)


def _row_id(record: DynamoDBRecord) -> str | None:
    return string_attribute(record.raw_event.get("dynamodb", {}).get("Keys", {}), "id")
