"""What the provider's answers say of its window decides when new requests wait."""

from __future__ import annotations

import pytest

from dispatcher.pacing.window_watch import SILENT_MARGIN, WINDOW_GUARD, WindowWatch
from tests.fakes import FakeClock


def _watch_with_starts(clock: FakeClock, *offsets: float) -> tuple[WindowWatch, float]:
    """A watch whose first request started at 0 and the others at ``offsets``."""
    watch = WindowWatch(rate=20, clock=clock)
    first = watch.started()
    for offset in offsets:
        clock.t = offset
        watch.started()
    return watch, first


def test_requests_on_their_way_that_would_spend_the_window_hold_the_next() -> None:
    clock = FakeClock()
    watch, first = _watch_with_starts(clock, 0.05, 0.10, 0.15)  # three more after the first
    clock.t = 0.2  # its answer comes back: 3 left in a window that resets 0.5 s after it left

    assert watch.hold(first, remaining=3, resets_in=0.5) == pytest.approx(0.3 + WINDOW_GUARD)
    assert watch.hold(first, remaining=4, resets_in=0.5) == 0.0  # one more fits


def test_requests_started_after_the_window_resets_do_not_spend_it() -> None:
    clock = FakeClock()
    watch, first = _watch_with_starts(clock, 0.6, 0.7, 0.8)  # after a reset at 0.5
    clock.t = 0.3  # (an answer that took its time)

    assert watch.hold(first, remaining=0, resets_in=0.5) == pytest.approx(0.2 + WINDOW_GUARD)
    clock.t = 0.9
    assert watch.hold(first, remaining=0, resets_in=0.5) == 0.0  # that window is over


def test_a_slow_answer_from_an_idle_account_holds_nothing() -> None:
    # one request, answered after 7 s, with plenty left in a long window: no reason to wait
    clock = FakeClock()
    watch, first = _watch_with_starts(clock)
    clock.t = 7.0

    assert watch.hold(first, remaining=500, resets_in=60) == 0.0


def test_a_provider_that_says_nothing_of_its_window_is_paced_under_its_limit() -> None:
    clock = FakeClock()
    watch, first = _watch_with_starts(clock)
    assert watch.margin == 0.0  # nothing known yet: at the limit

    assert watch.hold(first, remaining=None, resets_in=None) == 0.0
    assert watch.margin == SILENT_MARGIN
    assert watch.interval == pytest.approx(1 / (20 * (1 - SILENT_MARGIN)))  # the buckets' pace
    assert watch.hold(first, remaining=5, resets_in=0.5) == 0.0
    assert watch.margin == 0.0  # it does say: watched, not margined
