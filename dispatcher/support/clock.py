"""Time, made swappable: tests and the local stack inject their own clock.

Every wait in the dispatcher (rate-limit pacing, retry backoff, ``Retry-After``) goes through a
:class:`Clock`, and every bound on those waits is a :class:`Deadline` counted down from the
Lambda context's remaining time, so no wait outlives the invocation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "Deadline",
    "RemainingTime",
    "SystemClock",
    "iso_utc",
    "parse_iso",
    "remaining_time",
]


class Clock(Protocol):
    """Monotonic seconds for intervals, UTC wall time for timestamps, and sleep."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class RemainingTime(Protocol):
    """The part of a Lambda context a deadline needs."""

    def get_remaining_time_in_millis(self) -> int: ...


class _FifteenMinutes:
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def remaining_time(context: Any) -> RemainingTime:
    """The Lambda context, or a 15-minute stand-in when there is none (plain scripts)."""
    return context if hasattr(context, "get_remaining_time_in_millis") else _FifteenMinutes()


@dataclass(frozen=True)
class Deadline:
    """A point on a clock's monotonic axis after which no new work may start."""

    clock: Clock
    at: float

    @classmethod
    def from_context(cls, context: RemainingTime, clock: Clock, *, reserve: float) -> Deadline:
        """The invocation's end, less ``reserve`` seconds kept for bookkeeping writes."""
        remaining = context.get_remaining_time_in_millis() / 1000.0
        return cls(clock, clock.monotonic() + max(0.0, remaining - reserve))

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock.monotonic())


def iso_utc(moment: datetime) -> str:
    """``2026-11-24T09:30:00.000Z``: fixed width, so string order is time order."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_iso(value: object) -> datetime | None:
    """An ISO-8601 time with an offset (``Z`` included) as an aware datetime; None if it is
    not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
