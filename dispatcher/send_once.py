"""Steps 2 and 3 of ``DESIGN.md``, "Sending": one provider send per row content, ever.

Powertools Idempotency wraps the provider call alone, keyed on the row id plus the hash of its
request attributes, and keeps the delivery id, so a record redelivered after its send
succeeded finishes its bookkeeping without a second send. Bookkeeping must sit outside the
wrapped function, because Powertools deletes the idempotency record when the function raises.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict

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

from dispatcher.clock import Clock, Deadline, iso_utc
from dispatcher.message import Message
from dispatcher.observability import logger
from dispatcher.providers.base import MailProvider
from dispatcher.providers.errors import TransientError
from dispatcher.ratelimit import RequestSlots
from dispatcher.retry import RetryPolicy, SendFailedError, send_with_retries
from dispatcher.suppression import leaving_out

__all__ = ["IDEMPOTENCY_KEY_PREFIX", "OnceSender", "SendResult", "Sent"]

#: Stable idempotency key prefix, so a refactor of the code does not reset every key.
IDEMPOTENCY_KEY_PREFIX = "dispatcher.send"

#: How often the result of a send is offered to the idempotency store in all (Powertools'
#: own save, then ours), with a backoff: DynamoDB throttles in bursts.
SAVE_ATTEMPTS = 5


class SendResult(TypedDict):
    """What the idempotency store keeps for a sent message (its ``data``)."""

    provider: str
    delivery_id: str | None
    sent_at: str  # the history item's sort key, so a replay rewrites the same item
    expires_at: NotRequired[int]  # absent from records saved before it was kept
    attempts: int
    #: cc/bcc the suppression screen left out of the send (absent: none, or an older record).
    left_out: NotRequired[list[str]]


@dataclass(frozen=True)
class Sent:
    """A message the provider has accepted, now or (``replayed``) by an earlier delivery."""

    result: SendResult
    replayed: bool
    #: The message as the provider got it (without the recipients the screen left out).
    message: Message
    latency_seconds: float | None = None


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

    def __init__(
        self,
        *,
        provider: MailProvider,
        persistence_store: DynamoDBPersistenceLayer,
        expires_after_seconds: int,
        request_timeout: float,
        history_retention_days: int,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.provider = provider
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

    def register_lambda_context(self, context: Any) -> None:
        """Lets Powertools bound an in-progress record by the invocation's deadline."""
        self._config.register_lambda_context(context)

    def send(
        self,
        message: Message,
        *,
        bucket: RequestSlots,
        deadline: Deadline,
        prior: int,
        budget: int,
        screen: Callable[[Message], Message] | None = None,
    ) -> Sent:
        """Send ``message`` once, or recognise that it already was.

        ``screen`` (the suppression list's) runs only when the message is really to be sent,
        after the idempotency record says it was not yet: a redelivery of a mail already
        accepted replays it, even if an address was suppressed since.

        Raises
        ------
        SendFailedError
            The provider did not accept it within ``budget`` requests, or an earlier
            delivery of the same record died mid-send.
        RecipientSuppressedError
            ``screen`` refused it (no idempotency record is kept: Powertools deletes it).
        """
        progress = _Progress()
        key = {"id": message.id, "content_hash": message.content_hash}
        try:
            result: SendResult = self._send_once(
                key=key,
                message=message,
                bucket=bucket,
                deadline=deadline,
                budget=budget,
                prior=prior,
                progress=progress,
                screen=screen,
            )
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
            raise SendFailedError(interrupted, 1) from None
        except IdempotencyPersistenceLayerError:
            if progress.result is None:
                raise  # nothing was sent; Lambda retries the record (step 6)
            result = progress.result
            self._keep(key, result, deadline)
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

    def history_expiry(self, sent_at: datetime) -> int:
        """The history item's TTL (epoch seconds) for a mail sent at ``sent_at``."""
        return int((sent_at + self._retention).timestamp())

    def _send(
        self,
        *,
        key: dict[str, str],
        message: Message,
        bucket: RequestSlots,
        deadline: Deadline,
        budget: int,
        prior: int,
        progress: _Progress,
        screen: Callable[[Message], Message] | None,
    ) -> SendResult:
        """Step 3, under Powertools Idempotency keyed on ``key`` (row id + content hash)."""
        progress.ran = True
        if screen is not None:
            message = screen(message)
        progress.message = message
        delivery = send_with_retries(
            self.provider,
            message,
            bucket=bucket,
            deadline=deadline,
            clock=self._clock,
            policy=RetryPolicy(
                max_attempts=budget, request_timeout=self._request_timeout, rng=self._rng
            ),
        )
        sent_at = self._clock.now()
        progress.latency_seconds = delivery.latency_seconds
        progress.result = SendResult(
            provider=self.provider.name,
            delivery_id=delivery.delivery_id,
            sent_at=iso_utc(sent_at),
            expires_at=self.history_expiry(sent_at),
            attempts=prior + delivery.attempts,
        )
        if message.left_out:
            progress.result["left_out"] = list(message.left_out)
        return progress.result
