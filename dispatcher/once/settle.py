"""Settling a send whose answer never came, before the row is sent again.

``DESIGN.md``, "When the provider's answer never came": a row carrying an
:class:`~dispatcher.model.unsettled.Unsettled` marker is not sent until its provider has been asked
whether it took the mail. The answer is one of four verdicts, and only "not taken" lets the
row be sent:

- the provider's look-ups may not show the mail yet (it lags): **wait** until
  ``closed_at + LOOKUP_DELAY_SECONDS``; a "not found" before then proves nothing;
- the look-up found it: **taken**, and the row is moved to history with that delivery id;
- the look-up, made after the delay, found nothing: **not taken**, send as usual;
- the look-up itself failed: **unknown**, the row keeps waiting (never sent on a guess).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dispatcher.model.unsettled import Unsettled
from dispatcher.pacing.invocation_bucket import BucketTimeoutError, RequestSlots
from dispatcher.pacing.retry import DEFAULT_429_PAUSE_SECONDS, MIN_REQUEST_SECONDS
from dispatcher.providers.base import DeliveryLookup, Found
from dispatcher.providers.errors import ConfigError, ProviderError, RateLimitedError, TransientError
from dispatcher.support.clock import Clock, Deadline

if TYPE_CHECKING:
    from dispatcher.config.settings import Settings

__all__ = ["LookupFailed", "NotTaken", "Settler", "Taken", "Verdict", "Wait"]


@dataclass(frozen=True)
class Wait:
    """Too early to trust a "not found": ask from ``until``."""

    until: datetime


@dataclass(frozen=True)
class Taken:
    """The provider (``provider``) has the mail."""

    found: Found
    provider: str


@dataclass(frozen=True)
class NotTaken:
    """A look-up made after the provider's lag found nothing: the mail was not taken."""


@dataclass(frozen=True)
class LookupFailed:
    """The look-up could not say; ``error`` is why."""

    error: ProviderError


Verdict = Wait | Taken | NotTaken | LookupFailed


class Settler:
    """Puts an unsettled send's question to its provider's look-up.

    Parameters
    ----------
    lookups:
        One look-up per provider name (the marker says which provider the send went to).
    delay_seconds:
        ``LOOKUP_DELAY_SECONDS``: how long after the window a taken mail is assumed visible.
    """

    @classmethod
    def from_settings(
        cls, settings: Settings, lookups: Mapping[str, DeliveryLookup], *, clock: Clock
    ) -> Settler:
        return cls(
            lookups,
            delay_seconds=settings.lookup_delay_seconds,
            request_timeout=settings.request_timeout_seconds,
            clock=clock,
        )

    def __init__(
        self,
        lookups: Mapping[str, DeliveryLookup],
        *,
        delay_seconds: float,
        request_timeout: float,
        clock: Clock,
    ) -> None:
        self._lookups = dict(lookups)
        self._delay = delay_seconds
        self._timeout = request_timeout
        self._clock = clock

    def settle(
        self,
        unsettled: Unsettled,
        *,
        slots: Callable[[str], RequestSlots],
        deadline: Deadline,
    ) -> Verdict:
        """Ask, if it is time to; each look-up request is paced by its provider's ``slots``
        like a send. A send interrupted with a failover provider configured names both
        (``blastengine+ses``): either may have it, and "not taken" needs both to say so."""
        due = unsettled.visible_from(self._delay)
        if self._clock.now() < due:
            return Wait(due)
        for name in unsettled.provider.split("+"):
            verdict = self._ask(name, unsettled, slots(name), deadline)
            if not isinstance(verdict, NotTaken):
                return verdict
        return NotTaken()

    def _ask(
        self, name: str, unsettled: Unsettled, bucket: RequestSlots, deadline: Deadline
    ) -> Verdict:
        lookup = self._lookups.get(name)
        if lookup is None:
            return LookupFailed(ConfigError(f"no look-up for provider {name!r}"))

        def take_slot() -> None:
            try:
                bucket.acquire(deadline, reserve=MIN_REQUEST_SECONDS)
            except BucketTimeoutError as exc:
                raise TransientError(f"no request slot before the deadline ({exc})") from None

        try:
            found = lookup.find(
                unsettled,
                timeout=max(MIN_REQUEST_SECONDS, min(self._timeout, deadline.remaining())),
                before_request=take_slot,
            )
        except RateLimitedError as exc:
            # The account's window is spent for everyone: pause the pacing as a send would.
            bucket.pause(exc.retry_after or DEFAULT_429_PAUSE_SECONDS)
            return LookupFailed(exc)
        except ProviderError as exc:
            return LookupFailed(exc)
        return NotTaken() if found is None else Taken(found, name)
