"""The interface every mail provider implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from dispatcher.model.message import Message

if TYPE_CHECKING:
    from dispatcher.model.unsettled import Unsettled

__all__ = ["Accepted", "DeliveryLookup", "Found", "MailProvider"]


@dataclass(frozen=True)
class Accepted:
    """A mail the provider took, and what its answer said of the account's rate window.

    ``remaining`` is how many requests the window still allows (blastengine's
    ``X-RateLimit-Remaining``), ``window_resets_in`` the seconds until it refills
    (``X-Rate-Limit-Retry-After-Seconds``): every sender of the account sees the same, so
    pacing on them slows down before the 429 comes.
    """

    delivery_id: str | None
    remaining: int | None = None
    window_resets_in: float | None = None


class MailProvider(Protocol):
    """Sends one message with one HTTP request; retries and pacing live in
    :mod:`dispatcher.pacing.retry`.

    ``send`` returns what the provider accepted (its delivery id is None if it did not say
    which delivery the mail became) or raises a
    :class:`~dispatcher.providers.errors.ProviderError`. No transport exception escapes it.
    """

    name: str

    def send(self, message: Message, *, timeout: float) -> Accepted: ...


@dataclass(frozen=True)
class Found:
    """The delivery a look-up found for a send whose answer never came."""

    delivery_id: str
    taken_at: datetime


class DeliveryLookup(Protocol):
    """Asks a provider whether it took a mail (``DESIGN.md``, "When the provider's answer
    never came"). ``find`` returns the delivery, None when the provider has none, or raises
    a :class:`~dispatcher.providers.errors.ProviderError` when it cannot tell;
    ``before_request`` runs before each request (it takes a rate-limit slot)."""

    name: str

    def find(
        self, unsettled: Unsettled, *, timeout: float, before_request: Callable[[], None]
    ) -> Found | None: ...
