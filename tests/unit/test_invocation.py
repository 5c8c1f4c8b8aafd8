"""An invocation's waits for request slots are timed on the injected clock (RateLimitWait)."""

from __future__ import annotations

from dispatcher.flow.invocation import Invocation
from dispatcher.pacing.invocation_bucket import TokenBucket
from dispatcher.support.clock import Deadline
from tests.fakes import FakeClock


def test_the_time_spent_waiting_for_slots_is_the_clocks() -> None:
    # GIVEN an invocation pacing one provider at 2 requests/s on a fake clock
    clock = FakeClock()
    invocation = Invocation(
        deadline=Deadline(clock, at=60.0),
        open_bucket=lambda _: TokenBucket(rate=2.0, clock=clock),
        clock=clock,
    )

    # WHEN five requests take their slots
    for _ in range(5):
        invocation.slots("blastengine").acquire()

    # THEN the waits counted are exactly the time the clock was made to sleep
    assert clock.sleeps, "a 2/s bucket must make five requests wait"
    assert invocation.waited_seconds() == sum(clock.sleeps)
    assert invocation.waited_seconds() > 0
