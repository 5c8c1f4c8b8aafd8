"""Sending one message with pacing and rate-limit-aware retries, inside a deadline.

``DESIGN.md``, "Sending", step 3: retry 429 (honouring ``Retry-After``), 5xx and requests
that never left with exponential backoff and full jitter, bounded both by a number of
attempts and by the Lambda's remaining time; never retry another 4xx. Tenacity runs the loop;
the decisions are the small functions below. A request that may have been taken (a read
timeout, a connection broken after the write) is not retried at all: ``DESIGN.md``, "When the
provider's answer never came".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from aws_lambda_powertools.metrics import MetricUnit
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from dispatcher.model.message import Message
from dispatcher.model.row import ErrorKind
from dispatcher.pacing.invocation_bucket import BucketTimeoutError, RequestSlots
from dispatcher.providers.base import Accepted, MailProvider
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ProviderError,
    RateLimitedError,
    TransientError,
    unexpected,
)
from dispatcher.support.clock import Clock, Deadline
from dispatcher.support.observability import logger, metrics

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "DEFAULT_429_PAUSE_SECONDS",
    "Delivery",
    "RetryPolicy",
    "SendFailedError",
    "full_jitter",
    "send_with_retries",
]

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 20.0
#: The pause applied to the whole bucket after a 429 that carried no ``Retry-After``.
DEFAULT_429_PAUSE_SECONDS = 1.0
#: A request is not started with less time than this left; it could not finish anyway.
MIN_REQUEST_SECONDS = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """Tunables of the in-invocation retry loop; ``rng`` is swappable to pin the jitter."""

    max_attempts: int = 3
    request_timeout: float = 10.0
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_cap: float = BACKOFF_CAP_SECONDS
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)


@dataclass(frozen=True)
class Delivery:
    """A message the provider accepted."""

    delivery_id: str | None
    attempts: int
    latency_seconds: float


class SendFailedError(Exception):
    """The provider did not accept the message within this invocation's budget."""

    def __init__(self, error: ProviderError, attempts: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts


class _OutOfTime(TransientError):
    """The invocation's budget ran out before a request could start."""


def _should_retry(exc: BaseException) -> bool:
    # 429, 5xx and requests that never left (all TransientError) may succeed next time. Any
    # other 4xx, a config error or an invalid message fails the same way again: stop at once.
    # Running out of time is transient for the row, but not worth a retry in this invocation.
    # A request that may have been taken is never repeated blindly: a look-up settles it.
    return isinstance(exc, TransientError) and not isinstance(exc, _OutOfTime | AmbiguousSendError)


def full_jitter(attempt: int, policy: RetryPolicy) -> float:
    """AWS's "full jitter": uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * 2 ** max(0, attempt - 1))
    return policy.rng.uniform(0.0, ceiling)


class _WaitRetryAfterOrBackoff(wait_base):
    """``Retry-After`` when a 429 gives one, exponential backoff with full jitter otherwise."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return float(exc.retry_after)
        return full_jitter(retry_state.attempt_number, self._policy)


class _StopAtDeadline(stop_base):
    """Stop rather than start a wait after which no request could finish in time."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.upcoming_sleep + MIN_REQUEST_SECONDS > self._deadline.remaining()


def _hold_for_the_window(bucket: RequestSlots, started: float, accepted: Accepted) -> None:
    """The requests already on their way may spend what the provider's window has left (ours,
    or any other sender's of the account): then the next would be a 429, so wait for the
    reset (:mod:`dispatcher.pacing.window_watch`)."""
    hold = bucket.window.hold(
        started, remaining=accepted.remaining, resets_in=accepted.window_resets_in
    )
    if hold:
        bucket.pause(hold)


def send_with_retries(
    provider: MailProvider,
    message: Message,
    *,
    bucket: RequestSlots,
    deadline: Deadline,
    clock: Clock,
    policy: RetryPolicy,
) -> Delivery:
    """Send ``message``, paced by ``bucket``, retrying transient failures until ``deadline``.

    Raises
    ------
    SendFailedError
        With the last provider error and the number of requests made (possibly 0, when not
        even one request slot was free before the deadline).
    """
    attempts = 0

    def attempt() -> tuple[str | None, float]:
        nonlocal attempts
        try:
            bucket.acquire(deadline, reserve=MIN_REQUEST_SECONDS)
        except BucketTimeoutError as exc:
            raise _OutOfTime(str(exc)) from None
        timeout = min(policy.request_timeout, deadline.remaining())
        attempts += 1
        started, opened_at = bucket.window.started(), clock.now()
        try:
            accepted = provider.send(message, timeout=max(timeout, MIN_REQUEST_SECONDS))
        except AmbiguousSendError as exc:
            # When the provider could have taken it: from before the request left to after
            # its answer was given up on (the look-up adds a margin for clocks).
            exc.opened_at, exc.closed_at = opened_at, clock.now()
            raise
        except RateLimitedError as exc:
            bucket.pause(
                exc.retry_after if exc.retry_after is not None else DEFAULT_429_PAUSE_SECONDS
            )
            raise
        except ProviderError as exc:
            if exc.kind is ErrorKind.INVALID:
                metrics.add_metric(name="RequestNotBuilt", unit=MetricUnit.Count, value=1)
            raise
        except Exception as exc:
            metrics.add_metric(name="ProviderClientErrors", unit=MetricUnit.Count, value=1)
            logger.exception("a provider's client raised what it does not map")
            raise unexpected(getattr(provider, "name", type(provider).__name__), exc) from exc
        _hold_for_the_window(bucket, started, accepted)
        return accepted.delivery_id, clock.monotonic() - started

    retrying = Retrying(
        retry=retry_if_exception(_should_retry),
        wait=_WaitRetryAfterOrBackoff(policy),
        stop=stop_after_attempt(policy.max_attempts) | _StopAtDeadline(deadline),
        sleep=clock.sleep,
        reraise=True,
    )
    try:
        delivery_id, latency = retrying(attempt)
    except _OutOfTime as exc:
        raise SendFailedError(exc, attempts) from None
    except ProviderError as exc:
        raise SendFailedError(exc, attempts) from exc
    return Delivery(delivery_id=delivery_id, attempts=attempts, latency_seconds=latency)
