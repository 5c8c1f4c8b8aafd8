from __future__ import annotations

import pytest

from dispatcher.pacing.invocation_bucket import BucketTimeoutError, TokenBucket
from dispatcher.support.clock import Deadline
from tests.fakes import FakeClock


def test_slots_are_spaced_one_interval_apart() -> None:
    # GIVEN a bucket at 10 requests per second
    clock = FakeClock()
    bucket = TokenBucket(rate=10, clock=clock)

    # WHEN 5 requests acquire back to back
    starts = []
    for _ in range(5):
        bucket.acquire()
        starts.append(round(clock.monotonic(), 6))

    # THEN they start 0.1 s apart, the first at once
    assert starts == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_an_idle_bucket_does_not_bank_a_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, clock=clock)
    bucket.acquire()
    clock.advance(5)

    bucket.acquire()
    bucket.acquire()

    assert round(clock.monotonic(), 6) == 5.1


def test_a_pause_holds_every_caller() -> None:
    # GIVEN a 429 said "come back in 2 s"
    clock = FakeClock()
    bucket = TokenBucket(rate=100, clock=clock)
    bucket.acquire()
    bucket.pause(2.0)

    # WHEN the next callers acquire
    bucket.acquire()
    first = clock.monotonic()
    bucket.acquire()

    # THEN nobody starts before the pause ends, and pacing resumes after it
    assert first == pytest.approx(2.0)
    assert clock.monotonic() == pytest.approx(2.01)


def test_no_slot_is_taken_past_the_deadline() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, clock=clock)
    deadline = Deadline(clock, at=1.5)
    bucket.acquire(deadline)
    bucket.acquire(deadline)  # slot at t=1

    with pytest.raises(BucketTimeoutError):
        bucket.acquire(deadline)  # slot at t=2 is past the deadline

    # the refused caller took no slot: the next one after the deadline moves gets t=2
    bucket.acquire()
    assert clock.monotonic() == pytest.approx(2.0)
