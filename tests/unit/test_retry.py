from __future__ import annotations

import random

import pytest

from dispatcher.model.message import Message
from dispatcher.pacing.invocation_bucket import TokenBucket
from dispatcher.pacing.retry import (
    RetryPolicy,
    SendFailedError,
    full_jitter,
    send_with_retries,
)
from dispatcher.pacing.window_watch import WINDOW_GUARD
from dispatcher.providers.base import Accepted
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    ProviderError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from dispatcher.support.clock import Deadline
from tests.fakes import FakeClock

MESSAGE = Message(
    id="r1", to="a@example.com", subject="s", from_email="f@example.com", from_name="", text="t"
)


class ScriptedProvider:
    """Answers each send with the next scripted outcome (an exception or a delivery id)."""

    name = "scripted"

    def __init__(
        self, clock: FakeClock, *outcomes: ProviderError | str, latency: float = 0.1
    ) -> None:
        self.outcomes = list(outcomes)
        self.clock = clock
        self.latency = latency
        self.calls: list[float] = []

    def send(self, message: Message, *, timeout: float) -> Accepted:
        self.calls.append(self.clock.monotonic())
        self.clock.advance(self.latency)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome if isinstance(outcome, Accepted) else Accepted(outcome)


def _send(
    provider: ScriptedProvider,
    clock: FakeClock,
    *,
    attempts: int = 5,
    remaining: float = 100.0,
    bucket: TokenBucket | None = None,
):
    return send_with_retries(
        provider,
        MESSAGE,
        bucket=bucket or TokenBucket(rate=1000, clock=clock),
        deadline=Deadline(clock, at=clock.monotonic() + remaining),
        clock=clock,
        policy=RetryPolicy(max_attempts=attempts, request_timeout=5, rng=random.Random(7)),
    )


def test_5xx_then_success_is_retried_with_backoff() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(clock, TransientError("HTTP 503", http_status=503), "d-1")

    delivery = _send(provider, clock)

    assert (delivery.delivery_id, delivery.attempts) == ("d-1", 2)
    assert len(clock.sleeps) >= 1
    assert 0 <= max(clock.sleeps) <= 0.5  # full jitter within the first backoff step


def test_429_retry_after_is_honoured_and_pauses_the_bucket() -> None:
    # GIVEN the provider answers 429 "Retry-After: 7" once
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, clock=clock)
    provider = ScriptedProvider(clock, RateLimitedError("HTTP 429", retry_after=7.0), "d-1")

    # WHEN the message is sent
    delivery = _send(provider, clock, bucket=bucket)

    # THEN the retry started no sooner than 7 s after the 429, with no real waiting
    assert delivery.attempts == 2
    assert provider.calls[1] - (provider.calls[0] + provider.latency) == pytest.approx(7.0)
    # and the bucket was paused for everybody else too
    before = clock.monotonic()
    bucket.acquire()
    assert clock.monotonic() == pytest.approx(before, abs=0.01)


@pytest.mark.parametrize(
    "error", [RejectedError("HTTP 400", http_status=400), ConfigError("HTTP 401", http_status=401)]
)
def test_other_4xx_and_config_errors_are_never_retried(error: ProviderError) -> None:
    clock = FakeClock()
    provider = ScriptedProvider(clock, error, "never")

    with pytest.raises(SendFailedError) as raised:
        _send(provider, clock)

    assert raised.value.attempts == 1
    assert raised.value.error is error
    assert clock.sleeps == []


def test_a_send_that_may_have_been_taken_is_never_retried_and_carries_its_window() -> None:
    # GIVEN a 503 (not taken: retried), then a request whose answer never came
    clock = FakeClock()
    provider = ScriptedProvider(
        clock, TransientError("HTTP 503"), AmbiguousSendError("read timed out"), "never"
    )

    # WHEN it is sent with a budget of five
    with pytest.raises(SendFailedError) as raised:
        _send(provider, clock)

    # THEN the loop stops at the ambiguous request, naming when it could have been taken
    error = raised.value.error
    assert isinstance(error, AmbiguousSendError)
    assert raised.value.attempts == 2
    assert error.opened_at is not None
    assert error.closed_at is not None
    assert error.opened_at == clock.now() - (error.closed_at - error.opened_at)
    assert (error.closed_at - error.opened_at).total_seconds() == pytest.approx(0.1)


def test_attempts_are_bounded() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(clock, *[TransientError("HTTP 500")] * 10)

    with pytest.raises(SendFailedError) as raised:
        _send(provider, clock, attempts=3)

    assert raised.value.attempts == 3
    assert len(provider.calls) == 3


def test_no_wait_outlives_the_deadline() -> None:
    # GIVEN a 429 asking for 30 s, with 10 s left in the invocation
    clock = FakeClock()
    provider = ScriptedProvider(clock, RateLimitedError("HTTP 429", retry_after=30.0), "late")

    # WHEN sending
    with pytest.raises(SendFailedError) as raised:
        _send(provider, clock, remaining=10.0)

    # THEN it gives up at once instead of sleeping past the end
    assert raised.value.attempts == 1
    assert isinstance(raised.value.error, RateLimitedError)
    assert clock.sleeps == []


def test_no_request_starts_when_no_slot_is_free_before_the_deadline() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(clock, "never")

    with pytest.raises(SendFailedError) as raised:
        _send(provider, clock, remaining=0.1)

    assert raised.value.attempts == 0
    assert provider.calls == []
    assert isinstance(raised.value.error, TransientError)


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0, rng=random.Random(1))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        samples = [full_jitter(attempt, policy) for _ in range(200)]
        assert min(samples) >= 0
        assert max(samples) <= ceiling
        assert max(samples) > ceiling / 2  # it does use the range


@pytest.mark.parametrize(
    ("rate", "remaining", "waited"),
    [
        (10, 0, 4.0 - 0.1 + WINDOW_GUARD),  # spent: wait for the reset the provider counts
        (10, 3, 0.0),  # room left
    ],
)
def test_a_spent_rate_window_pauses_the_bucket_before_any_429(
    rate: float, remaining: int, waited: float
) -> None:
    # GIVEN the provider accepts a mail, 0.1 s after it was asked, and says what is left of
    # the account's window, which resets 4 s after the request was counted
    clock = FakeClock()
    bucket = TokenBucket(rate=rate, clock=clock)
    provider = ScriptedProvider(clock, Accepted("d-1", remaining=remaining, window_resets_in=4.0))

    _send(provider, clock, bucket=bucket)

    # THEN a window the account's requests in flight would spend makes the next request
    # wait for the reset, counted from when the answered request left, not meet a 429
    before = clock.monotonic()
    bucket.acquire()
    assert clock.monotonic() - before == pytest.approx(waited, abs=0.01)
