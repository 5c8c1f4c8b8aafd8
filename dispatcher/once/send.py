"""Steps 2 and 3 of ``DESIGN.md``, "Sending": one provider send per row content, ever.

Powertools Idempotency wraps the provider call alone, keyed on the row id plus the hash of its
request attributes, and keeps the delivery id, so a record redelivered after its send
succeeded finishes its bookkeeping without a second send. Bookkeeping must sit outside the
wrapped function, because Powertools deletes the idempotency record when the function raises.

A send whose answer never came is a *result*, not an exception: the wrapped function returns
it, so Powertools keeps it, and a redelivery replays "may have been taken" instead of sending
again. An in-progress record met by a later delivery (the holder died) means the same. Either
way :class:`MaybeSentError` carries the :class:`~dispatcher.model.unsettled.Unsettled` marker the
row keeps until a look-up settles it.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from tenacity import RetryError, Retrying, stop_after_attempt, wait_exponential_jitter

from dispatcher.model.message import Message
from dispatcher.model.unsettled import Unsettled
from dispatcher.pacing.invocation_bucket import RequestSlots
from dispatcher.pacing.retry import RetryPolicy, SendFailedError, send_with_retries
from dispatcher.providers.errors import AmbiguousSendError, ConfigError
from dispatcher.providers.routing import Routes, proves_not_taken
from dispatcher.recipients.suppression import leaving_out
from dispatcher.support.clock import Clock, Deadline, iso_utc
from dispatcher.support.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = [
    "IDEMPOTENCY_KEY_PREFIX",
    "MaybeSentError",
    "OnceSender",
    "SendResult",
    "SendTerms",
    "Sent",
]

#: Stable idempotency key prefix, so a refactor of the code does not reset every key.
IDEMPOTENCY_KEY_PREFIX = "dispatcher.send"

#: How often the result of a send is offered to the idempotency store in all (Powertools'
#: own save, then ours), with a backoff: DynamoDB throttles in bursts.
SAVE_ATTEMPTS = 5
# No Lambda context is registered with the idempotency config, on purpose: registered, an
# in-progress record lapses at its invocation's deadline and the next delivery sends the mail
# again blindly. Powertools warns on every send that it cannot bound the record; that is the
# point, so the warning (and only it) is silenced.
warnings.filterwarnings(
    "ignore", message="Couldn't determine the remaining time left", category=UserWarning
)

#: Lambda's longest invocation: how far back a dead holder's send may lie when its
#: in-progress record cannot be read.
MAX_INVOCATION_SECONDS = 15 * 60


class SendResult(TypedDict):
    """What the idempotency store keeps for a sent message (its ``data``)."""

    provider: str
    delivery_id: str | None
    sent_at: str  # the history item's sort key, so a replay rewrites the same item
    expires_at: NotRequired[int]  # absent from records saved before it was kept
    attempts: int
    #: cc/bcc the suppression screen left out of the send (absent: none, or an older record).
    left_out: NotRequired[list[str]]
    #: Present when no answer came: the request may have been taken (Unsettled.to_plain).
    unsettled: NotRequired[dict[str, Any]]


class MaybeSentError(Exception):
    """The provider may have taken the mail, and nothing says whether: the row must wait for
    a look-up (``unsettled``), never be sent again blindly."""

    def __init__(self, unsettled: Unsettled, attempts: int) -> None:
        super().__init__(unsettled.reason)
        self.unsettled = unsettled
        #: The row's attempts in all, this send's included.
        self.attempts = attempts


@dataclass(frozen=True)
class Sent:
    """A message the provider has accepted, now or (``replayed``) by an earlier delivery."""

    result: SendResult
    replayed: bool
    #: The message as the provider got it (without the recipients the screen left out).
    message: Message
    latency_seconds: float | None = None


@dataclass(frozen=True)
class SendTerms:
    """What one send may spend and must respect, decided by the dispatcher for its row."""

    #: Each provider's request slots (its account's own limit), by provider name.
    slots: Callable[[str], RequestSlots]
    #: The invocation's deadline, less the time its bookkeeping needs.
    deadline: Deadline
    #: Requests the row has used in earlier deliveries, and how many this one may make.
    prior: int
    budget: int
    #: The suppression list's screen; it runs only when the message is really to be sent,
    #: after the idempotency record says it was not yet: a redelivery of a mail already
    #: accepted replays it, even if an address was suppressed since.
    screen: Callable[[Message], Message] | None = None
    #: An ambiguous send of this content that a look-up has since found not taken (its
    #: window's opening): it joins the idempotency key, so that the record which remembers
    #: "may have been taken" is not replayed over the send that follows.
    settled: str | None = None


@dataclass
class _Progress:
    """Side channel out of the idempotent function: ``ran`` tells a fresh send from a
    replayed one; ``result`` survives a failure to save the idempotency record after a
    successful send, so bookkeeping still completes."""

    ran: bool = False
    result: SendResult | None = None
    message: Message | None = None
    latency_seconds: float | None = None


class OnceSender:
    """Sends a message at most once per (row id, content hash), with retries and pacing."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        routes: Routes,
        client: DynamoDBClient,
        *,
        clock: Clock,
        rng: random.Random,
    ) -> OnceSender:
        """The sender whose idempotency records live in ``IDEMPOTENCY_TABLE_NAME``."""
        return cls(
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

    def __init__(
        self,
        *,
        routes: Routes,
        persistence_store: DynamoDBPersistenceLayer,
        expires_after_seconds: int,
        request_timeout: float,
        history_retention_days: int,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.routes = routes
        self._request_timeout = request_timeout
        self._retention = timedelta(days=history_retention_days)
        self._clock = clock
        self._rng = rng
        self._persistence = persistence_store
        self._config = IdempotencyConfig(
            expires_after_seconds=expires_after_seconds, raise_on_no_idempotency_key=True
        )
        self._send_once = idempotent_function(
            self._send,
            data_keyword_argument="key",
            persistence_store=persistence_store,
            config=self._config,
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )

    def send(self, message: Message, terms: SendTerms) -> Sent:
        """Send ``message`` once, within ``terms``, or recognise that it already was.

        The routes decide which provider sends, and which takes over
        (:mod:`dispatcher.providers.routing`).

        Raises
        ------
        SendFailedError
            The provider did not accept it within ``terms.budget`` requests.
        MaybeSentError
            The provider may have taken it, now or in an earlier delivery of the same record
            (which returned no answer, or died mid-send).
        RecipientSuppressedError
            ``terms.screen`` refused it (no idempotency record is kept: Powertools deletes it).
        """
        progress = _Progress()
        key = {"id": message.id, "content_hash": message.content_hash}
        if terms.settled is not None:
            key["settled"] = terms.settled
        try:
            result: SendResult = self._send_once(
                key=key, message=message, terms=terms, progress=progress
            )
        except IdempotencyAlreadyInProgressError:
            # An earlier delivery of this record died mid-send (killed, or timed out): its
            # record stays "in progress" (no Lambda context is registered, so it never lapses
            # at that invocation's deadline into a blind resend). Lambda does not redeliver a
            # shard's batch while an invocation of it still runs, so the holder is gone, and
            # whether its request reached the provider only the provider can say.
            raise MaybeSentError(self._interrupted(key, message), terms.prior + 1) from None
        except IdempotencyPersistenceLayerError:
            if progress.result is None:
                raise  # nothing was sent; Lambda retries the record (step 6)
            result = progress.result
            self._keep(key, result, terms.deadline)
        if "unsettled" in result:
            unsettled = Unsettled.from_plain(result["unsettled"])
            if unsettled is not None:
                raise MaybeSentError(unsettled, int(result["attempts"]))
        sent = progress.message or leaving_out(message, result.get("left_out", ()))
        return Sent(
            result,
            replayed=not progress.ran,
            message=sent,
            latency_seconds=progress.latency_seconds,
        )

    def _keep(self, key: dict[str, str], result: SendResult, deadline: Deadline) -> None:
        """Save the result Powertools could not. Left "in progress", the record would turn a
        redelivery (after bookkeeping failed too) into "stopped mid-send", and the sweeper's
        re-fire would send the mail a second time; saved, the redelivery replays it."""
        retrying = Retrying(
            stop=stop_after_attempt(SAVE_ATTEMPTS - 1),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
            sleep=self._clock.sleep,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if deadline.remaining() <= 0:
                        break
                    self._persistence.save_success(data=key, result=dict(result))
        except RetryError:
            logger.warning("sent, but the idempotency record was not saved; finishing bookkeeping")

    def _interrupted(self, key: dict[str, str], message: Message) -> Unsettled:
        """The marker for a send whose holder died: from when its in-progress record was
        written (just before the request) to now (the holder is gone)."""
        now = self._clock.now()
        opened = now - timedelta(seconds=MAX_INVOCATION_SECONDS)
        try:
            record = self._persistence.get_record(key)
        except Exception:  # unreadable: the widest window is still right
            record = None
            logger.warning("the interrupted send's record could not be read; widest window")
        if record is not None and record.expiry_timestamp:
            written = int(record.expiry_timestamp) - self._config.expires_after_seconds
            opened = max(opened, datetime.fromtimestamp(written, UTC))
        # Which provider it was in flight to died with the holder: with a failover provider
        # configured, either may have it, and the look-up asks both.
        plan = (message.provider,) if message.provider else self.routes.every()
        return message.unsettled(
            provider="+".join(plan),
            opened_at=min(opened, now),
            closed_at=now,
            reason="an earlier delivery of this record stopped mid-send",
        )

    def history_expiry(self, sent_at: datetime) -> int:
        """The history item's TTL (epoch seconds) for a mail sent at ``sent_at``."""
        return int((sent_at + self._retention).timestamp())

    def _send(
        self,
        *,
        key: dict[str, str],
        message: Message,
        terms: SendTerms,
        progress: _Progress,
    ) -> SendResult:
        """Step 3, under Powertools Idempotency keyed on ``key`` (row id + content hash):
        through the routes' providers in turn, the next only when the one before proved it
        did not take the mail. All of it is one idempotent send, so a failover is never a
        second mail."""
        progress.ran = True
        if terms.screen is not None:
            message = terms.screen(message)
        progress.message = message
        plan = self.routes.plan(message)
        used = 0
        for name in plan:
            try:
                provider = self.routes.provider(name)
                delivery = send_with_retries(
                    provider,
                    message,
                    bucket=terms.slots(name),
                    deadline=terms.deadline,
                    clock=self._clock,
                    policy=RetryPolicy(
                        max_attempts=self.routes.budget(name, plan, terms.budget),
                        request_timeout=self._request_timeout,
                        rng=self._rng,
                    ),
                )
            except ConfigError as exc:  # a pinned provider this deployment does not have
                raise SendFailedError(exc, used) from None
            except SendFailedError as exc:
                used += exc.attempts
                if isinstance(exc.error, AmbiguousSendError):
                    # Returned, not raised: Powertools keeps it, and a redelivery replays it.
                    # Never failed over: the look-up says first whether `name` took it.
                    progress.result = self._maybe_taken(
                        message, exc.error, name, terms.prior + used
                    )
                    return progress.result
                # No request made (no slot before the deadline) proves nothing of `name`.
                if name == plan[-1] or not exc.attempts or not proves_not_taken(exc.error):
                    # Not taken: Powertools deletes the record, a later send is fresh.
                    raise SendFailedError(exc.error, used) from None
                self.routes.failed(name)
                logger.warning(
                    "failing over: the primary provider did not take the mail",
                    extra={"provider": name, "error": exc.error.message},
                )
                continue
            used += delivery.attempts
            break
        sent_at = self._clock.now()
        progress.latency_seconds = delivery.latency_seconds
        progress.result = SendResult(
            provider=name,
            delivery_id=delivery.delivery_id,
            sent_at=iso_utc(sent_at),
            expires_at=self.history_expiry(sent_at),
            attempts=terms.prior + used,
        )
        if message.left_out:
            progress.result["left_out"] = list(message.left_out)
        return progress.result

    def _maybe_taken(
        self, message: Message, error: AmbiguousSendError, provider: str, attempts: int
    ) -> SendResult:
        now = self._clock.now()
        unsettled = message.unsettled(
            provider=provider,
            opened_at=error.opened_at or now,
            closed_at=error.closed_at or now,
            reason=error.message,
        )
        return SendResult(
            provider=provider,
            delivery_id=None,
            sent_at=iso_utc(now),
            attempts=attempts,
            unsettled=unsettled.to_plain(),
        )
