"""Reading the provider's window from its answers, so a window is never asked for one too many.

Pacing spaces requests ``1/R`` apart, which a token bucket always lets through; a provider that
counts fixed windows (blastengine: ``X-RateLimit-Remaining`` requests left in the window,
``X-Rate-Limit-Retry-After-Seconds`` until it resets) also refuses a request that arrives a
little early or late and lands as the window's ``R + 1``-th, and each 429 costs a whole window.
So every answer is read: the requests this invocation started after the answered one, before
the window it spoke of resets, all spend what that window had left when the answered one was
counted (another sender's requests show in the next answer's count). When they would spend
it, new requests are held until the window resets, as the provider counts it: the answered
request's start plus the seconds it was told, which also aligns the next requests with the
window's start. A provider whose answers say nothing of its window (SES) is paced a little under its
limit instead (:data:`SILENT_MARGIN`). The design page (``docs/concepts/architecture.md``,
"Pacing") has the measurements that chose this and the constants.
"""

from __future__ import annotations

import bisect
import threading

from dispatcher.support.clock import Clock

__all__ = ["SILENT_MARGIN", "WINDOW_GUARD", "WindowWatch"]

#: Seconds added to a window's reset before the next request starts: a request that arrives
#: a little before the reset is counted in the spent window and refused.
WINDOW_GUARD = 0.01
#: The share of the limit left unused while the provider's answers say nothing of its window
#: (SES's, whose maximum send rate is met per second): a request that arrives late or early
#: in a busy second has nothing else to keep it out of the next.
SILENT_MARGIN = 0.02
#: Start times kept, enough for every request of a window in flight at once.
_KEPT = 512


class WindowWatch:
    """One invocation's view of a provider's window; thread-safe.

    Example
    -------
    >>> from dispatcher.support.clock import SYSTEM_CLOCK
    >>> watch = WindowWatch(rate=20, clock=SYSTEM_CLOCK)
    >>> started = watch.started()
    >>> watch.hold(started, remaining=10, resets_in=0.5)  # plenty left: no hold
    0.0
    """

    def __init__(self, *, rate: float, clock: Clock) -> None:
        self._rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._starts: list[float] = []
        self._silent = False

    @property
    def margin(self) -> float:
        """The share of the limit to leave unused: :data:`SILENT_MARGIN` once the provider's
        answers showed they say nothing of its window; none before, or when they do."""
        return SILENT_MARGIN if self._silent else 0.0

    @property
    def interval(self) -> float:
        """Seconds between two requests' slots: ``1/R``, a little more under the margin."""
        return 1.0 / (self._rate * (1.0 - self.margin))

    def started(self) -> float:
        """A request starts now; returns its start time, for :meth:`hold`."""
        with self._lock:  # the clock read inside: the list stays in start order
            now = self._clock.monotonic()
            self._starts.append(now)
            if len(self._starts) > 2 * _KEPT:
                del self._starts[:-_KEPT]
        return now

    def hold(self, started_at: float, *, remaining: int | None, resets_in: float | None) -> float:
        """Seconds to hold new requests after an answer to the request started at
        ``started_at`` said ``remaining`` requests were left for ``resets_in`` seconds;
        0 when the window still has room (or the answer said nothing of it)."""
        if remaining is None or resets_in is None:
            self._silent = True
            return 0.0
        self._silent = False
        now = self._clock.monotonic()
        resets_at = started_at + resets_in  # as the provider counts it, from our side
        if now >= resets_at:
            return 0.0  # the window it spoke of is over
        with self._lock:  # ours started after it, into the same window
            ours = bisect.bisect_left(self._starts, resets_at) - bisect.bisect_right(
                self._starts, started_at
            )
        if remaining > ours:
            return 0.0
        return max(0.0, started_at + resets_in + WINDOW_GUARD - now)
