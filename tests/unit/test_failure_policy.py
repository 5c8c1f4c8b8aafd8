"""The failure policy on its own: which stamp each way of not sending leads to."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.flow.failure_policy import DEFER_CAP_SECONDS, FailurePolicy, deferral_delay
from dispatcher.model.row import ErrorKind, RowStatus
from dispatcher.providers.errors import (
    ConfigError,
    InvalidMessageError,
    RateLimitedError,
    RejectedError,
    TransientError,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = FailurePolicy(max_attempts=8, attempts_per_invocation=3, deferral_base_seconds=30)


def _after(error: Exception, *, prior: int = 0, attempts: int = 3):  # type: ignore[no-untyped-def]
    return POLICY.after_error(error, prior=prior, attempts=attempts, now=NOW, rng=random.Random(7))


@pytest.mark.parametrize(
    ("prior", "budget"), [(0, 3), (3, 3), (5, 3), (6, 2), (7, 1), (8, 1), (20, 1)]
)
def test_the_budget_is_the_smaller_limit_and_never_zero(prior: int, budget: int) -> None:
    assert POLICY.budget(prior) == budget


def test_a_transient_error_below_the_limit_defers_with_a_backoff() -> None:
    # WHEN three requests of a fresh row ended in a 503
    stamp = _after(TransientError("HTTP 503", http_status=503), attempts=3)

    # THEN the row is deferred, its attempts counted, retry_at after the first backoff
    assert stamp.status is RowStatus.DEFERRED
    assert stamp.attempts == 3
    assert stamp.error_kind is ErrorKind.TRANSIENT
    assert stamp.http_status == 503
    assert stamp.retry_at is not None
    retry_at = datetime.fromisoformat(stamp.retry_at.replace("Z", "+00:00"))
    assert NOW + timedelta(seconds=15) <= retry_at <= NOW + timedelta(seconds=30)
    assert stamp.describe().startswith("deferred until ")


def test_a_transient_error_at_the_limit_fails_and_says_it_gave_up() -> None:
    stamp = _after(TransientError("HTTP 503"), prior=6, attempts=2)

    assert stamp.status is RowStatus.FAILED
    assert stamp.attempts == 8
    assert stamp.retry_at is None
    assert stamp.last_error == "gave up after 8 attempts: HTTP 503"


def test_a_429_defers_no_sooner_than_its_retry_after() -> None:
    stamp = _after(RateLimitedError("HTTP 429", retry_after=600), attempts=1)

    assert stamp.status is RowStatus.DEFERRED
    assert stamp.error_kind is ErrorKind.RATE_LIMITED
    assert stamp.retry_at == "2026-12-01T09:10:00.000Z"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RejectedError("HTTP 400: bad", http_status=400), ErrorKind.REJECTED),
        (ConfigError("HTTP 401", http_status=401), ErrorKind.CONFIG),
    ],
)
def test_permanent_errors_fail_at_once(error: Exception, kind: ErrorKind) -> None:
    stamp = _after(error, prior=3, attempts=1)

    assert stamp.status is RowStatus.FAILED
    assert stamp.error_kind is kind
    assert stamp.attempts == 4
    assert stamp.last_error == str(error)
    assert stamp.stamped_at == "2026-12-01T09:00:00.000Z"


def test_an_invalid_message_counts_no_attempt() -> None:
    stamp = _after(InvalidMessageError("to: bad"), prior=2, attempts=0)
    assert (stamp.status, stamp.attempts) == (RowStatus.FAILED, 2)

    problems = POLICY.invalid(["to: missing", "subject: missing"], prior=0, now=NOW)
    assert problems.error_kind is ErrorKind.INVALID
    assert problems.last_error == "to: missing; subject: missing"
    assert problems.retry_at is None


def test_a_scheduled_row_waits_until_its_send_after() -> None:
    stamp = POLICY.scheduled(NOW + timedelta(days=1), prior=0, now=NOW)

    assert stamp.status is RowStatus.SCHEDULED
    assert stamp.retry_at == "2026-12-02T09:00:00.000Z"
    assert stamp.error_kind is None
    assert stamp.describe() == "scheduled for 2026-12-02T09:00:00.000Z"


def test_deferral_grows_is_capped_and_respects_retry_after() -> None:
    rng = random.Random(3)
    first = deferral_delay(3, attempts_per_invocation=3, retry_after=None, rng=rng)
    later = deferral_delay(9, attempts_per_invocation=3, retry_after=None, rng=rng)
    huge = deferral_delay(300, attempts_per_invocation=3, retry_after=None, rng=rng)
    assert 15 <= first <= 30
    assert 60 <= later <= 120
    assert huge <= DEFER_CAP_SECONDS
    assert deferral_delay(3, attempts_per_invocation=3, retry_after=500, rng=rng) == 500
