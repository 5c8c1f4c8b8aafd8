"""The interface every mail provider implements."""

from __future__ import annotations

from typing import Protocol

from dispatcher.message import Message

__all__ = ["MailProvider"]


class MailProvider(Protocol):
    """Sends one message with one HTTP request; retries and pacing live in :mod:`dispatcher.retry`.

    ``send`` returns the provider's delivery id (None if the provider accepted the mail but
    did not say which delivery it became) or raises a
    :class:`~dispatcher.providers.errors.ProviderError`. No transport exception escapes it.
    """

    name: str

    def send(self, message: Message, *, timeout: float) -> str | None: ...
