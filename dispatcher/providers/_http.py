"""HTTP helpers shared by providers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RATE_REMAINING", "RATE_RESETS_IN", "parse_rate_window", "parse_retry_after"]

#: blastengine's rate-limit headers, on every answer (../shared/BLASTENGINE.md).
RATE_REMAINING = "X-RateLimit-Remaining"
RATE_RESETS_IN = "X-Rate-Limit-Retry-After-Seconds"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns None when the header is absent or unreadable; never a negative number. The cap
    (the invocation's remaining time) is the caller's, which knows the deadline.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_rate_window(headers: Mapping[str, str]) -> tuple[int | None, float | None]:
    """(requests left, seconds until the window refills) from the rate-limit headers; each
    None when absent or unreadable."""
    raw = headers.get(RATE_REMAINING)
    try:
        remaining = max(0, int(raw.strip())) if raw is not None else None
    except ValueError:
        remaining = None
    return remaining, parse_retry_after(headers.get(RATE_RESETS_IN))
