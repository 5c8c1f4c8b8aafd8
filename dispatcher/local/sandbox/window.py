"""The sandbox's rate limit, in the two shapes a provider's limit takes.

``fixed`` (the default) is blastengine's as BLASTENGINE.md describes it: a window of one
second in which ``limit`` requests are taken, ``X-RateLimit-Remaining`` the requests left in
it and ``X-Rate-Limit-Retry-After-Seconds`` the seconds until it resets; a burst at the end of
one window and the start of the next passes, a 21st request inside one window does not.
``bucket`` is an API gateway's token bucket: ``limit`` tokens refilled at ``limit`` per
second, so a steady rate passes and a burst beyond one second's worth is refused; its
"remaining" is the whole tokens held, its "reset" the time until the next one.

Each is told the time (``monotonic`` seconds), so a test drives it on a fake clock.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

__all__ = [
    "WINDOW_SHAPES",
    "FixedWindow",
    "RateWindow",
    "TokenBucketWindow",
    "check_shape",
    "rate_window",
]

WINDOW_SHAPES = ("fixed", "bucket")
WindowShape = Literal["fixed", "bucket"]


class RateWindow(Protocol):
    def take(self, now: float) -> bool:
        """Count one request at ``now``; False when it is over the limit (a 429)."""
        ...

    def state(self, now: float) -> tuple[int, float]:
        """Requests left, and seconds until more are allowed, as the headers say."""
        ...


class FixedWindow:
    """``limit`` requests in each window of ``seconds``, windows aligned to the clock."""

    def __init__(self, limit: float, seconds: float = 1.0) -> None:
        self._limit = max(1, math.floor(limit * seconds))
        self._seconds = seconds
        self._index: int | None = None
        self._taken = 0

    def take(self, now: float) -> bool:
        self._roll(now)
        if self._taken >= self._limit:
            return False
        self._taken += 1
        return True

    def state(self, now: float) -> tuple[int, float]:
        self._roll(now)
        resets_at = (math.floor(now / self._seconds) + 1) * self._seconds
        return self._limit - self._taken, resets_at - now

    def _roll(self, now: float) -> None:
        index = math.floor(now / self._seconds)
        if index != self._index:
            self._index, self._taken = index, 0


class TokenBucketWindow:
    """A bucket of ``limit`` tokens refilled at ``limit`` per second."""

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._tokens = limit
        self._at: float | None = None

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def state(self, now: float) -> tuple[int, float]:
        self._refill(now)
        next_in = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._limit
        return int(self._tokens), next_in

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self._tokens = min(self._limit, self._tokens + (now - self._at) * self._limit)
        self._at = now


def check_shape(shape: str) -> None:
    """Refuse a shape that is not one of :data:`WINDOW_SHAPES` (ValueError, naming them)."""
    if shape not in WINDOW_SHAPES:
        raise ValueError(f"window must be one of {', '.join(WINDOW_SHAPES)}, not {shape!r}")


def rate_window(shape: str, limit: float) -> RateWindow:
    """The window of ``shape`` (one of :data:`WINDOW_SHAPES`) at ``limit`` requests/second."""
    check_shape(shape)
    return FixedWindow(limit) if shape == "fixed" else TokenBucketWindow(limit)
