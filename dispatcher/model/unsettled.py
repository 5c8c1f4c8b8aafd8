"""What a row keeps of a send whose answer never came, so that a look-up can settle it later.

``DESIGN.md``, "When the provider's answer never came": an ambiguous send is never repeated
blindly. The row is stamped ``deferred`` (``error_kind`` ``ambiguous``) and carries one
bookkeeping attribute, ``unsettled``: which provider, to which address, between which two
moments the mail could have been taken, and digests of the content as it was sent. Before the
row's next send the dispatcher asks the provider (:mod:`dispatcher.once.settle`).

The marker lives on the row, not on the idempotency record: the sweeper's re-fire bumps
``revision``, which changes the idempotency key, and the row is the one thing that stays until
the mail is in history. Digests instead of the content itself keep the row far from
DynamoDB's 400 KB item limit (a row may hold 100 KB of body).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dispatcher.support.clock import iso_utc, parse_iso

__all__ = ["Unsettled", "content_digest", "describe_unsettled"]


def content_digest(subject: str | None, text: str | None, html: str | None) -> str:
    """A digest of what a delivery's look-up returns (``subject``, ``text_part``,
    ``html_part``), blind to the line endings and outer blank space a mail system may
    rewrite, so that what was sent and what the provider kept compare equal."""

    def norm(part: str | None) -> str:
        return (part or "").replace("\r\n", "\n").replace("\r", "\n").strip()

    canonical = json.dumps([norm(subject), norm(text), norm(html)], ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Unsettled:
    """A send the provider may have taken: the question a look-up answers.

    ``content_hash`` is the row's content when it was sent (its history item's, if the
    look-up finds the mail); ``digests`` what the provider's copy is compared with.
    """

    provider: str
    to: str
    opened_at: datetime
    closed_at: datetime
    digests: tuple[str, ...]
    content_hash: str
    reason: str
    #: The subject as sent, for the history item of a mail the look-up finds (the row may
    #: have been edited since).
    subject: str = ""
    #: The row the mail was for (a look-up keyed by row, as SES's, needs it).
    row_id: str = ""

    def visible_from(self, delay_seconds: float) -> datetime:
        """When a look-up may trust a "not found": the provider's lag after the window."""
        return self.closed_at + timedelta(seconds=delay_seconds)

    def to_plain(self) -> dict[str, Any]:
        """JSON-able form, for the idempotency record's result."""
        return {
            "provider": self.provider,
            "to": self.to,
            "opened_at": iso_utc(self.opened_at),
            "closed_at": iso_utc(self.closed_at),
            "digests": list(self.digests),
            "content_hash": self.content_hash,
            "reason": self.reason,
            "subject": self.subject,
            "row_id": self.row_id,
        }

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> Unsettled | None:
        """The marker from :meth:`to_plain`'s shape; None if it is not one (a hand edit)."""
        try:
            opened, closed = parse_iso(data["opened_at"]), parse_iso(data["closed_at"])
            digests = tuple(str(d) for d in data["digests"])
            if opened is None or closed is None or not digests:
                return None
            return cls(
                provider=str(data["provider"]),
                to=str(data["to"]),
                opened_at=opened,
                closed_at=closed,
                digests=digests,
                content_hash=str(data.get("content_hash", "")),
                reason=str(data.get("reason", "")),
                subject=str(data.get("subject", "")),
                row_id=str(data.get("row_id") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_attribute(self) -> dict[str, Any]:
        """The marker as a DynamoDB ``M`` value."""
        plain = self.to_plain()
        return {
            "M": {
                name: {"L": [{"S": d} for d in value]} if name == "digests" else {"S": value}
                for name, value in plain.items()
            }
        }

    @classmethod
    def from_attribute(cls, value: Any) -> Unsettled | None:
        """The marker from a row's ``unsettled`` attribute; None if absent or malformed."""
        fields = value.get("M") if isinstance(value, dict) else None
        if not isinstance(fields, dict):
            return None
        plain: dict[str, Any] = {}
        for name, item in fields.items():
            if not isinstance(item, dict):
                return None
            if "L" in item and isinstance(item["L"], list):
                plain[name] = [v.get("S") for v in item["L"] if isinstance(v, dict)]
            else:
                plain[name] = item.get("S")
        return cls.from_plain(plain)


def describe_unsettled(unsettled: Unsettled, retry_at: str | None) -> str:
    """One line for people (CLI, console): what the row waits for, and why (the caller
    names it "waiting for its look-up")."""
    when = f"; next look-up at {retry_at}" if retry_at else ""
    return (
        f"{unsettled.provider} may have taken the mail to "
        f"{unsettled.to} sent between {iso_utc(unsettled.opened_at)} and "
        f"{iso_utc(unsettled.closed_at)} ({unsettled.reason}); it is not sent again unless "
        f"{unsettled.provider} has no such mail{when}"
    )
