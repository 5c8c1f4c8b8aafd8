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
from dataclasses import dataclass, replace
from datetime import datetime
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

from dispatcher.config.settings import Settings
from dispatcher.flow.bookkeeping import Bookkeeping
from dispatcher.flow.failure_policy import FailurePolicy
from dispatcher.flow.invocation import Invocation
from dispatcher.flow.outcome import Outcome, RecordResult, emit_metrics
from dispatcher.flow.triage import Reason, triage
from dispatcher.model.message import Message
from dispatcher.model.row import ErrorKind, Row, string_attribute
from dispatcher.model.unsettled import Unsettled
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
from dispatcher.recipients.unsubscribe_links import UnsubscribeLinks
from dispatcher.reputation.guard import ReputationGuard
from dispatcher.storage.dynamodb import StoreError, StoreUnavailableError
from dispatcher.storage.store import Store
from dispatcher.support.clock import SYSTEM_CLOCK, Clock, Deadline, iso_utc, remaining_time
from dispatcher.support.observability import logger, metrics
from dispatcher.templates.library import TemplateLibrary
from dispatcher.templates.rows import RowProblems, parse_row

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
        templates: TemplateLibrary | None = None,
        unsubscribes: UnsubscribeLinks | None = None,
        guard: ReputationGuard | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.unsubscribes = unsubscribes
        self.guard = guard
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
        attachments = Attachments.from_settings(settings, s3_client)
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
        return cls(
            settings=settings,
            store=Store.from_settings(settings, client),
            sender=OnceSender.from_settings(settings, routes, client, clock=clock, rng=rng),
            attachments=attachments,
            settler=Settler.from_settings(settings, lookups, clock=clock),
            suppressions=SuppressionList.from_settings(settings, client),
            events=EventPublisher.from_settings(settings, events_client),
            limits=LimitTable.per_provider(settings, client, {*routes.every(), *lookups}),
            templates=TemplateLibrary.from_settings(settings, dynamodb_client=client),
            unsubscribes=UnsubscribeLinks.from_settings(settings),
            guard=ReputationGuard.from_settings(settings, client),
            clock=clock,
            rng=rng,
        )

    def handle_batch(self, event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
        """Process one stream batch and return Lambda's partial batch response."""
        if self.templates is not None:
            self.templates.fresh()  # each template read once per batch, as it is now
        invocation = Invocation(
            deadline=Deadline.from_context(
                remaining_time(context), self._clock, reserve=BOOKKEEPING_RESERVE_SECONDS
            ),
            open_bucket=partial(self._bucket, expected=len(event.get("Records") or [])),
            clock=self._clock,
            paused=self.guard.paused(self.settings.categories) if self.guard else {},
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
            self._count_sent(invocation)
            if self.events is not None:  # never fails the batch (EventPublisher.flush)
                self.events.add(r.event for r in invocation.results if r.event is not None)
                self.events.flush()
        self.last_results = invocation.results
        return response

    def _count_sent(self, invocation: Invocation) -> None:
        """The batch's mail, by category, into the guard's counts: one write per category;
        a failure loses a count, never the batch."""
        if self.guard is None:
            return
        now = self._clock.now()
        for category, sent in invocation.sent_by_category.items():
            try:
                self.guard.add(category, now, sent=sent)
            except StoreError as exc:
                logger.warning("a reputation count was lost", extra={"reason": str(exc)})

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
            result = self._dispatch(Row.from_stream(row_id, stream["NewImage"]), invocation)
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
        """One record through the screens, each a step of ``DESIGN.md``'s "Sending": a screen
        passes the message on or ends the record with its result."""
        current = self.store.get_row(row.id)
        if current is None or not current.same_request(row):
            return _stale(row, current)
        # A send of this row that may have been taken stays named on every stamp until a
        # look-up settles it (DESIGN.md, "When the provider's answer never came").
        record = _Record(row, invocation, self._clock.now(), current.unsettled)
        step = self._validated(record)
        screens = (
            self._settle_unanswered,
            self._unexpired,
            self._staged,
            self._resolved,
            self._guarded,
            self._linked,
        )
        for screen in screens:
            if isinstance(step, RecordResult):
                return step
            step = screen(step, record)
        return step if isinstance(step, RecordResult) else self._send(step, record)

    def _validated(self, record: _Record) -> Message | RecordResult:
        """Step 1, validate (rendering the row's template first, if it names one): a
        malformed row is stamped failed/invalid, a template that cannot give its mail
        failed/template, and neither reaches the API; step 2, a future ``send_after`` parks
        the row for the sweeper."""
        row, now, prior = record.row, record.now, record.prior
        try:
            parsed = parse_row(
                row,
                self.templates,
                default_from_email=self.settings.default_from_email,
                default_from_name=self.settings.default_from_name,
                now=now,
                allowed_from=self.settings.allowed_senders,
                categories=self.settings.categories,
            )
        except StoreUnavailableError:
            raise  # the templates table could not be read: the record is retried
        except StoreError as exc:  # no such table, no permission: the deployment's problem
            reason = f"template: the templates table could not be read ({exc})"
            parsed = RowProblems([reason], ErrorKind.CONFIG)
        except Exception as exc:
            # A bug met content it did not expect. Retrying the record would meet it again
            # until the mapping gave up, leaving the row with no status: it fails, with why.
            logger.exception("the row's content could not be handled")
            reason = f"row: could not be handled ({type(exc).__name__}: {exc}); please report"
            parsed = RowProblems([reason], ErrorKind.INVALID)
        if isinstance(parsed, RowProblems):
            stamp = self.policy.problems(parsed.problems, parsed.kind, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=record.unsettled)
        if parsed.send_after and parsed.send_after > now:
            stamp = self.policy.scheduled(parsed.send_after, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=record.unsettled)
        return parsed

    def _settle_unanswered(self, message: Message, record: _Record) -> Message | RecordResult:
        """Before anything is sent again: did the provider take the unanswered send?"""
        unsettled = record.unsettled
        if unsettled is None:
            return message
        verdict = self.settler.settle(
            unsettled, slots=record.invocation.slots, deadline=record.invocation.deadline
        )
        if isinstance(verdict, Taken):
            confirmed = self.books.confirmed(record.row, message, unsettled, verdict)
            if confirmed is not None:
                return confirmed
        elif isinstance(verdict, NotTaken):
            record.settled = iso_utc(unsettled.opened_at)
        else:
            return self.books.await_lookup(record.row, unsettled, verdict, record.prior)
        record.unsettled = None
        return message

    def _unexpired(self, message: Message, record: _Record) -> Message | RecordResult:
        """A row not sent by its expires_at is never sent (asked only now: a send that may
        have been taken is settled first, and goes to the history if it was)."""
        if message.expires_at is None or message.expires_at > record.now:
            return message
        stamp = self.policy.expired(message.expires_at, prior=record.prior, now=record.now)
        return self.books.keep(record.row, stamp, unsettled=None)

    def _staged(self, message: Message, record: _Record) -> Message | RecordResult:
        """A staging deployment's recipient rules, before any API call: a ``to`` outside the
        allowlist blocks the row; ``REDIRECT_ALL_TO`` replaces every recipient."""
        staged = self.staging.apply(message)
        if not isinstance(staged, str):
            return staged
        stamp = self.policy.blocked(staged, prior=record.prior, now=record.now)
        return self.books.keep(record.row, stamp, unsettled=None)

    def _resolved(self, message: Message, record: _Record) -> Message | RecordResult:
        """Still step 1: the attachments exist and fit (an S3 look-up, so not the parser's)."""
        try:
            resolved = self.attachments.resolve(message)
        except ProviderError as exc:  # no bucket, or no permission on it: `config`
            stamp = self.books.after_error(exc, record.prior, 0)
            return self.books.keep(record.row, stamp, unsettled=None)
        if isinstance(resolved, list):
            stamp = self.policy.invalid(resolved, prior=record.prior, now=record.now)
            return self.books.keep(record.row, stamp, unsettled=None)
        return resolved

    def _guarded(self, message: Message, record: _Record) -> Message | RecordResult:
        """A category the reputation guard paused sends nothing: its rows wait, ``paused``,
        until a person resumes it."""
        reason = record.invocation.paused.get(message.category)
        if reason is None:
            return message
        stamp = self.policy.paused(reason, prior=record.prior, now=record.now)
        return self.books.keep(record.row, stamp, unsettled=None)

    def _linked(self, message: Message, record: _Record) -> Message | RecordResult:
        """Mail of a category that is not transactional gets the stack's one-click
        unsubscribe link (RFC 8058), unless it carries its own."""
        return self.unsubscribes.link(message) if self.unsubscribes is not None else message

    def _send(self, message: Message, record: _Record) -> RecordResult:
        """Steps 2 to 5: send once, under the idempotency record keyed on id + content, then
        move the row or stamp it. No mail to an address that bounced for good: the
        suppression screen runs inside, only if this content was not sent already (a replay
        is finished, not failed)."""
        row, prior, now = record.row, record.prior, record.now
        terms = SendTerms(
            slots=record.invocation.slots,
            deadline=record.invocation.deadline,
            prior=prior,
            budget=self.policy.budget(prior),
            screen=self.suppressions.screen if self.suppressions is not None else None,
            settled=record.settled,
        )
        try:
            sent = self.sender.send(message, terms)
        except RecipientSuppressedError as exc:
            stamp = self.policy.suppressed(exc.reason, prior=prior, now=now)
            return self.books.keep(row, stamp, unsettled=None)
        except SendFailedError as exc:
            stamp = self.books.after_error(exc.error, prior, exc.attempts)
            return self.books.keep(row, stamp, unsettled=None)
        except MaybeSentError as exc:
            stamp = self.policy.ambiguous(exc.unsettled, attempts=exc.attempts, now=now)
            return replace(self.books.keep(row, stamp, unsettled=exc.unsettled), ambiguous=True)
        record.invocation.count_sent(message.category)
        return self.books.sent(row, sent)


@dataclass
class _Record:
    """What the screens of one record share: the row as the record carried it, when it was
    taken up, and what is known of an earlier send that got no answer."""

    row: Row
    invocation: Invocation
    now: datetime
    unsettled: Unsettled | None
    #: When a look-up found that an unanswered send was not taken (the idempotent send
    #: may then replace its record).
    settled: str | None = None

    @property
    def prior(self) -> int:
        return self.row.prior_attempts


def _stale(row: Row, current: Row | None) -> RecordResult:
    """A record can be older than its row (a redelivery after the row was sent, or an INSERT
    whose row was edited or cancelled before this batch ran): sending it would send content
    nobody wants any more."""
    if current is None:
        return RecordResult(Outcome.STALE, row.id, "row is gone (sent or cancelled)")
    return RecordResult(
        Outcome.STALE, row.id, "row was edited since; its own record sends the new content"
    )


def _row_id(record: DynamoDBRecord) -> str | None:
    return string_attribute(record.raw_event.get("dynamodb", {}).get("Keys", {}), "id")
