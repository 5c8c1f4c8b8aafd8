"""One result of blastengine's mail log (``GET /logs/mails/results``), read once for all.

The log keeps a result per recipient of each delivery for 62 days: its ``status`` (``SENT``,
``RETRY``, ``SOFTERROR``, ``HARDERROR``, ``DROP``), the receiving server's last answer and,
where the account tracks opens, ``open_time``. The look-up of a send whose answer never came,
the per-sweep status poll and the bounce catch-up all read these; this is the one reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dispatcher.model.row import normalise_address

__all__ = ["MailResult"]


@dataclass(frozen=True)
class MailResult:
    maillog_id: str | None  # the page's anchor
    delivery_id: str
    address: str  # normalised
    status: str
    at: str | None  # when the result last changed (``updated_time``, else ``delivery_time``)
    taken_at: str | None  # when blastengine took the mail (``created_time``)
    code: str | None  # the receiving server's last SMTP code
    message: str | None  # and its text
    opened_at: str | None  # ``open_time``, where the account tracks opens

    @classmethod
    def parse(cls, item: Mapping[str, Any]) -> MailResult | None:
        """The result, or None for one without a delivery id or an address."""
        delivery, address = item.get("delivery_id"), item.get("email")
        if delivery is None or not isinstance(address, str) or not address:
            return None
        maillog = item.get("maillog_id")
        return cls(
            maillog_id=str(maillog) if maillog is not None else None,
            delivery_id=str(delivery),
            address=normalise_address(address),
            status=str(item.get("status") or ""),
            at=_text(item.get("updated_time")) or _text(item.get("delivery_time")),
            taken_at=_text(item.get("created_time")),
            code=str(item["last_response_code"]) if item.get("last_response_code") else None,
            message=_text(item.get("last_response_message")),
            opened_at=_text(item.get("open_time")),
        )

    @property
    def detail(self) -> str | None:
        """The server's answer as one line (``550 5.1.1 user unknown``)."""
        return " ".join(part for part in (self.code, self.message) if part) or None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
