"""One token bucket per invocation, shared by every concurrent send.

The provider's rate limit is the ceiling and the dispatcher aims to run right at it
(``DESIGN.md``, "Rate limits"). Requests are given evenly spaced start slots, ``1/rate`` apart,
so the provider never sees a burst above its limit; and a 429 pauses the *whole* bucket for
its ``Retry-After``, since every other request would be refused too.
"""

from __future__ import annotations

import threading
from typing import Protocol

from dispatcher.pacing.window_watch import WindowWatch
from dispatcher.support.clock import Clock, Deadline

__all__ = ["BucketTimeoutError", "RequestSlots", "TokenBucket"]


class BucketTimeoutError(Exception):
    """No start slot is free before the deadline."""


class RequestSlots(Protocol):
    """What sending needs of a limiter: this invocation's own (:class:`TokenBucket`) or the
    account's, shared by every invocation
    (:class:`~dispatcher.pacing.account_limit.SharedBucket`)."""

    @property
    def rate(self) -> float: ...

    @property
    def window(self) -> WindowWatch:
        """What the provider's answers say of its window (:mod:`.window_watch`)."""
        ...

    def acquire(self, deadline: Deadline | None = None, *, reserve: float = 0.0) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def release(self) -> None: ...


class TokenBucket:
    """Hands out request start slots at ``rate`` per second; thread-safe.

    Example
    -------
    >>> from dispatcher.support.clock import SYSTEM_CLOCK
    >>> bucket = TokenBucket(rate=50, clock=SYSTEM_CLOCK)
    >>> bucket.acquire()  # returns once this request may start
    """

    def __init__(self, *, rate: float, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")
        self.window = WindowWatch(rate=rate, clock=clock)

    @property
    def rate(self) -> float:
        return self._rate

    def acquire(self, deadline: Deadline | None = None, *, reserve: float = 0.0) -> None:
        """Block until this caller may start a request.

        Raises
        ------
        BucketTimeoutError
            If the slot would start less than ``reserve`` seconds before ``deadline``; no
            slot is taken then, so others are not delayed by a request that never happens.
        """
        while True:
            with self._lock:
                now = self._clock.monotonic()
                slot = max(now, self._next_slot, self._paused_until)
                if deadline is not None and slot + reserve > deadline.at:
                    raise BucketTimeoutError(
                        f"next request slot is {slot - now:.2f}s away, past the deadline"
                    )
                self._next_slot = slot + self.window.interval
            if slot > now:
                self._clock.sleep(slot - now)
            with self._lock:
                # A 429 that arrived while we slept pauses us too: take a new slot after it.
                if self._clock.monotonic() >= self._paused_until:
                    return

    def pause(self, seconds: float) -> None:
        """Stop handing out slots for ``seconds`` (a 429's ``Retry-After``)."""
        with self._lock:
            until = self._clock.monotonic() + max(0.0, seconds)
            self._paused_until = max(self._paused_until, until)
            self._next_slot = max(self._next_slot, self._paused_until)

    def release(self) -> None:
        """Nothing to give back: this bucket's slots are nobody else's."""
