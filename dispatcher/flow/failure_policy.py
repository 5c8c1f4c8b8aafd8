"""What a row that was not sent becomes: the stamp to write, decided by pure functions.

``DESIGN.md``, "Sending", step 5: permanent errors fail the row; transient ones defer it, with
``retry_at`` = backoff(attempts), until the attempt limit fails it. Attempts are counted per
row across invocations (``MAX_ATTEMPTS``) and per invocation (``ATTEMPTS_PER_INVOCATION``),
so a long outage neither holds a shard nor retries forever. No I/O here: the dispatcher
writes what these return, and the unit tests check the decisions on their own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dispatcher.config.settings import DEFAULT_LOOKUP_DELAY_SECONDS, Settings
from dispatcher.model.row import ErrorKind, RowStatus
from dispatcher.model.stamp import FailureStamp
from dispatcher.model.unsettled import Unsettled
from dispatcher.providers.errors import InvalidMessageError, ProviderError, TransientError
from dispatcher.support.clock import iso_utc

__all__ = [
    "DEFER_BASE_SECONDS",
    "DEFER_CAP_SECONDS",
    "FailurePolicy",
    "deferral_delay",
]

#: First pause of a deferred row, doubled on each deferral up to the cap.
DEFER_BASE_SECONDS = 30.0
DEFER_CAP_SECONDS = 3600.0


def deferral_delay(
    attempts: int,
    *,
    attempts_per_invocation: int,
    retry_after: float | None,
    rng: random.Random,
    base: float = DEFER_BASE_SECONDS,
) -> float:
    """How long a ``deferred`` row waits before the sweeper re-fires it.

    Doubles with each deferral ("equal jitter", so it never drops to zero) and is never
    shorter than the provider's ``Retry-After``.
    """
    deferrals = max(1, -(-attempts // attempts_per_invocation))
    ceiling = min(DEFER_CAP_SECONDS, base * 2 ** (deferrals - 1))
    delay = ceiling / 2 + rng.uniform(0.0, ceiling / 2)
    return float(max(delay, retry_after or 0.0))


@dataclass(frozen=True)
class FailurePolicy:
    """The attempt limits, and the stamp each way of not sending leads to.

    Example
    -------
    >>> from datetime import UTC, datetime
    >>> policy = FailurePolicy(max_attempts=8, attempts_per_invocation=3)
    >>> policy.budget(prior=6)
    2
    >>> stamp = policy.after_error(TransientError("HTTP 503"), prior=6, attempts=2,
    ...     now=datetime(2026, 12, 1, tzinfo=UTC), rng=random.Random(1))
    >>> stamp.status.value, stamp.attempts
    ('failed', 8)
    """

    max_attempts: int
    attempts_per_invocation: int
    deferral_base_seconds: float = DEFER_BASE_SECONDS
    lookup_delay_seconds: float = DEFAULT_LOOKUP_DELAY_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> FailurePolicy:
        return cls(
            max_attempts=settings.max_attempts,
            attempts_per_invocation=settings.attempts_per_invocation,
            deferral_base_seconds=settings.deferral_base_seconds,
            lookup_delay_seconds=settings.lookup_delay_seconds,
        )

    def budget(self, prior: int) -> int:
        """Provider requests this invocation may make for a row that has spent ``prior``.

        Never below one: a row re-fired at its limit still gets its last request.
        """
        return max(1, min(self.attempts_per_invocation, self.max_attempts - prior))

    def invalid(self, problems: list[str], *, prior: int, now: datetime) -> FailureStamp:
        """A row the provider could never accept: failed at once, no attempt counted."""
        return _failed(ErrorKind.INVALID, "; ".join(problems), attempts=prior, now=now)

    def problems(
        self, problems: list[str], kind: ErrorKind, *, prior: int, now: datetime
    ) -> FailureStamp:
        """A row that cannot be sent as it is (``invalid``), or whose template cannot give its
        mail (``template``): failed at once, no attempt counted."""
        return _failed(kind, "; ".join(problems), attempts=prior, now=now)

    @staticmethod
    def paused(reason: str, *, prior: int, now: datetime) -> FailureStamp:
        """A row whose category the reputation guard paused: held, visible, until a person
        resumes the category (which re-fires it); no attempt counted."""
        return FailureStamp(
            RowStatus.PAUSED, prior, iso_utc(now), last_error=reason, error_kind=ErrorKind.PAUSED
        )

    def suppressed(self, reason: str, *, prior: int, now: datetime) -> FailureStamp:
        """A row whose ``to`` is on the suppression list: failed, no attempt counted."""
        return _failed(ErrorKind.SUPPRESSED, reason, attempts=prior, now=now)

    def blocked(self, reason: str, *, prior: int, now: datetime) -> FailureStamp:
        """A row this deployment may not send to (``RECIPIENT_ALLOWLIST``): failed at once."""
        return _failed(ErrorKind.BLOCKED, reason, attempts=prior, now=now)

    @staticmethod
    def expired(expires_at: datetime, *, prior: int, now: datetime) -> FailureStamp:
        """A row not sent by its ``expires_at``: failed, never sent (no limit decides it:
        the sweeper stamps it too)."""
        return _failed(
            ErrorKind.EXPIRED,
            f"not sent by its expires_at ({iso_utc(expires_at)}), so never sent; move "
            "expires_at later to send it after all",
            attempts=prior,
            now=now,
        )

    def scheduled(self, send_after: datetime, *, prior: int, now: datetime) -> FailureStamp:
        """A row whose ``send_after`` lies ahead: parked for the sweeper until then."""
        return FailureStamp(RowStatus.SCHEDULED, prior, iso_utc(now), retry_at=iso_utc(send_after))

    def ambiguous(self, unsettled: Unsettled, *, attempts: int, now: datetime) -> FailureStamp:
        """The provider may have taken it: deferred until its look-up can be trusted, the
        attempt limit notwithstanding (giving up here would leave the question open)."""
        until = unsettled.visible_from(self.lookup_delay_seconds)
        return FailureStamp(
            RowStatus.DEFERRED,
            attempts,
            iso_utc(now),
            last_error=f"{unsettled.reason}; {unsettled.provider} may have taken the mail, so "
            "it is looked up there before anything is sent again",
            error_kind=ErrorKind.AMBIGUOUS,
            retry_at=iso_utc(max(until, now)),
        )

    def lookup_failed(
        self,
        unsettled: Unsettled,
        error: ProviderError,
        *,
        prior: int,
        now: datetime,
        rng: random.Random,
    ) -> FailureStamp:
        """The look-up could not say whether the mail was taken: one attempt spent; deferred
        to ask again, and past the attempt limit failed with the question stated, never sent
        on a guess."""
        total = prior + 1
        window = f"{iso_utc(unsettled.opened_at)} and {iso_utc(unsettled.closed_at)}"
        question = (
            f"could not learn whether {unsettled.provider} took the mail to {unsettled.to} "
            f"sent between {window} ({error.message})"
        )
        if total < self.max_attempts:
            stamp = self._deferred(error, total, now, rng, reason=f"{question}; asking again")
            return replace(stamp, error_kind=ErrorKind.AMBIGUOUS)
        return _failed(
            ErrorKind.AMBIGUOUS,
            f"{question}; gave up asking after {total} attempts and did not send it again. "
            f"Check {unsettled.provider}'s delivery log for {unsettled.to}: re-fire to look "
            "it up again, or cancel the row if the mail went out",
            attempts=total,
            now=now,
            http_status=error.http_status,
        )

    def after_error(
        self,
        error: ProviderError,
        *,
        prior: int,
        attempts: int,
        now: datetime,
        rng: random.Random,
    ) -> FailureStamp:
        """The stamp after ``attempts`` requests in this invocation ended in ``error``.

        Transient errors defer the row until ``max_attempts`` is reached, then fail it;
        everything else fails it at once.
        """
        total = prior if isinstance(error, InvalidMessageError) else prior + attempts
        if isinstance(error, TransientError) and total < self.max_attempts:
            return self._deferred(error, total, now, rng, reason=error.message)
        reason = error.message
        if isinstance(error, TransientError):
            reason = f"gave up after {total} attempts: {reason}"
        return _failed(error.kind, reason, attempts=total, now=now, http_status=error.http_status)

    def _deferred(
        self, error: ProviderError, total: int, now: datetime, rng: random.Random, *, reason: str
    ) -> FailureStamp:
        """Deferred for the backoff of ``total`` attempts (never shorter than the provider's
        ``Retry-After``)."""
        delay = deferral_delay(
            total,
            attempts_per_invocation=self.attempts_per_invocation,
            retry_after=getattr(error, "retry_after", None),
            rng=rng,
            base=self.deferral_base_seconds,
        )
        return FailureStamp(
            RowStatus.DEFERRED,
            total,
            iso_utc(now),
            last_error=reason,
            error_kind=error.kind,
            http_status=error.http_status,
            retry_at=iso_utc(now + timedelta(seconds=delay)),
        )


def _failed(
    kind: ErrorKind, reason: str, *, attempts: int, now: datetime, http_status: int | None = None
) -> FailureStamp:
    return FailureStamp(
        RowStatus.FAILED,
        attempts,
        iso_utc(now),
        last_error=reason,
        error_kind=kind,
        http_status=http_status,
    )
