"""One invocation of the dispatcher: what its records share while the batch runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dispatcher.flow.outcome import RecordResult
from dispatcher.pacing.invocation_bucket import RequestSlots
from dispatcher.pacing.window_watch import WindowWatch
from dispatcher.support.clock import SYSTEM_CLOCK, Clock, Deadline

__all__ = ["Invocation", "TimedSlots"]


@dataclass
class Invocation:
    """One batch's state: its deadline, each provider's request slots (opened on first use,
    released at the end), a lock per row id (its records in stream order), the results."""

    deadline: Deadline
    open_bucket: Callable[[str], RequestSlots]
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    results: list[RecordResult] = field(default_factory=list)
    buckets: dict[str, TimedSlots] = field(default_factory=dict)
    clock: Clock = SYSTEM_CLOCK
    #: The categories the reputation guard pauses, with why, as read when the batch began.
    paused: dict[str, str] = field(default_factory=dict)
    #: Mail sent in this invocation, by category (the guard's counts, added once at its end).
    sent_by_category: dict[str, int] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def count_sent(self, category: str) -> None:
        with self._guard:
            self.sent_by_category[category] = self.sent_by_category.get(category, 0) + 1

    def slots(self, provider: str) -> RequestSlots:
        """This invocation's pacing of ``provider``'s account, opened on first use."""
        with self._guard:
            if provider not in self.buckets:
                self.buckets[provider] = TimedSlots(self.open_bucket(provider), self.clock)
            return self.buckets[provider]

    def waited_seconds(self) -> float:
        """How long this invocation's sends waited for a request slot, in all."""
        return sum(b.waited for b in self.buckets.values())

    def release(self) -> None:
        for bucket in self.buckets.values():
            bucket.release()


class TimedSlots:
    """A provider's request slots, counting the time spent waiting for them: the shared
    limit's waits (metric ``RateLimitWait``), a dashboard's sign that R is what bounds."""

    def __init__(self, slots: RequestSlots, clock: Clock = SYSTEM_CLOCK) -> None:
        self._slots = slots
        self._clock = clock
        self._lock = threading.Lock()
        self.waited = 0.0

    @property
    def rate(self) -> float:
        return self._slots.rate

    @property
    def window(self) -> WindowWatch:
        return self._slots.window

    def acquire(self, deadline: Deadline | None = None, *, reserve: float = 0.0) -> None:
        started = self._clock.monotonic()
        try:
            self._slots.acquire(deadline, reserve=reserve)
        finally:
            with self._lock:
                self.waited += self._clock.monotonic() - started

    def pause(self, seconds: float) -> None:
        self._slots.pause(seconds)

    def release(self) -> None:
        self._slots.release()
