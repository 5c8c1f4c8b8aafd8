"""Staging safety: a deployment that must never mail real customers.

Two settings, empty by default (docs/how-to/staging.md):

- ``RECIPIENT_ALLOWLIST``: addresses and ``@domain``\\ s, comma- or space-separated. A row
  whose ``to`` is outside it fails ``blocked`` before any API call; a cc/bcc outside it is
  left out of the mail and named, as a suppressed one is.
- ``REDIRECT_ALL_TO``: one address that receives every mail instead of its recipients (cc and
  bcc included). The original recipients are kept on the history item
  (``original_recipients``) and, where the provider takes custom headers (SES), in an
  ``X-Dispatcher-Original-Recipients`` header (:mod:`dispatcher.providers.ses.client`);
  blastengine's API takes none.

With both, the redirect address must itself be allowed. Each entry is checked when the
function starts: a typo in a safety net must stop the deployment, not widen the net.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dispatcher.config.settings import Settings, SettingsError, parse_allowlist
from dispatcher.model.message import Message
from dispatcher.recipients.suppression import leaving_out, normalise

__all__ = ["Staging"]


@dataclass(frozen=True)
class Staging:
    """The deployment's recipient rules; ``active`` is False in production."""

    allowlist: tuple[str, ...] = ()
    redirect_to: str | None = None

    def __post_init__(self) -> None:
        redirect = self.redirect_to
        if redirect is not None and self.allowlist and not self.allows(redirect):
            raise SettingsError(f"REDIRECT_ALL_TO ({redirect}) is outside RECIPIENT_ALLOWLIST")

    @classmethod
    def from_settings(cls, settings: Settings) -> Staging:
        return cls(parse_allowlist(settings.recipient_allowlist), settings.redirect_all_to)

    @property
    def active(self) -> bool:
        return bool(self.allowlist or self.redirect_to)

    def describe(self) -> str:
        """One line for people (the console's banner, the logs)."""
        parts = []
        if self.redirect_to:
            parts.append(f"every mail goes to {self.redirect_to} instead (REDIRECT_ALL_TO)")
        if self.allowlist:
            parts.append(f"only {', '.join(self.allowlist)} receive mail (RECIPIENT_ALLOWLIST)")
        return "; ".join(parts)

    def allows(self, address: str) -> bool:
        address = normalise(address)
        domain = "@" + address.rpartition("@")[2]
        return address in self.allowlist or domain in self.allowlist

    def apply(self, message: Message) -> Message | str:
        """The message as this deployment may send it, or why it may not (``blocked``)."""
        if self.redirect_to is not None:
            return replace(
                message,
                to=self.redirect_to,
                cc=(),
                bcc=(),
                original_recipients=message.recipients,
            )
        if not self.allowlist:
            return message
        if not self.allows(message.to):
            return f"to: {message.to} is outside RECIPIENT_ALLOWLIST; not sent"
        outside = [a for a in (*message.cc, *message.bcc) if not self.allows(a)]
        return leaving_out(message, outside)
