"""The interface every mail provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dispatcher.message import Message

__all__ = ["Accepted", "MailProvider"]


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
    """Sends one message with one HTTP request; retries and pacing live in :mod:`dispatcher.retry`.

    ``send`` returns what the provider accepted (its delivery id is None if it did not say
    which delivery the mail became) or raises a
    :class:`~dispatcher.providers.errors.ProviderError`. No transport exception escapes it.
    """

    name: str

    def send(self, message: Message, *, timeout: float) -> Accepted: ...
