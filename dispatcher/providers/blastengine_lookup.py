"""Asking blastengine whether it took a mail whose answer never came.

The transaction API takes no idempotency key and no client reference, so the question is put
the way ``BLASTENGINE.md`` ("Looking deliveries up") allows: the per-recipient results to the
row's ``to`` within the send's window (widened by a margin for clocks), then each candidate
delivery's stored ``subject``, ``text_part`` and ``html_part`` compared with digests of what
was sent. Every request takes a slot of the account's rate limit first (``before_request``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from dispatcher.clock import parse_iso
from dispatcher.providers.base import Found
from dispatcher.providers.blastengine import BlastengineClient
from dispatcher.providers.errors import TransientError
from dispatcher.unsettled import Unsettled, content_digest

__all__ = ["CLOCK_MARGIN_SECONDS", "MAX_CANDIDATES", "BlastengineLookup"]

#: Added on both sides of the window: the provider's clock and ours may disagree, and it is
#: not known which of its times ``delivery_start``/``delivery_end`` filter on.
CLOCK_MARGIN_SECONDS = 120.0
#: Results per page (the API's most), and pages read at most.
PAGE_SIZE = 1000
MAX_PAGES = 5
#: Deliveries to one address within one window compared at most; beyond it the look-up fails
#: (the row keeps waiting) rather than guess.
MAX_CANDIDATES = 50


class BlastengineLookup:
    """Finds the delivery an ambiguous send became, if blastengine has it."""

    name = "blastengine"

    def __init__(
        self, client: BlastengineClient, *, margin_seconds: float = CLOCK_MARGIN_SECONDS
    ) -> None:
        self._client = client
        self._margin = timedelta(seconds=margin_seconds)

    def find(
        self, unsettled: Unsettled, *, timeout: float, before_request: Callable[[], None]
    ) -> Found | None:
        """The delivery that matches ``unsettled``, or None if blastengine has none.

        Raises
        ------
        ProviderError
            The look-up itself failed (an error answer, no answer, too many candidates):
            nothing can be concluded.
        """
        candidates = self._candidates(unsettled, timeout, before_request)
        if len(candidates) > MAX_CANDIDATES:
            raise TransientError(
                f"{len(candidates)} deliveries to {unsettled.to} in the window: more than "
                f"{MAX_CANDIDATES} to compare"
            )
        for delivery_id, seen_at in candidates.items():
            before_request()
            detail = self._client.delivery(delivery_id, timeout=timeout)
            stored = content_digest(
                _text(detail.get("subject")),
                _text(detail.get("text_part")),
                _text(detail.get("html_part")),
            )
            if stored in unsettled.digests:
                taken_at = parse_iso(detail.get("created_time")) or seen_at
                return Found(delivery_id=delivery_id, taken_at=taken_at or unsettled.opened_at)
        return None

    def _candidates(
        self, unsettled: Unsettled, timeout: float, before_request: Callable[[], None]
    ) -> dict[str, datetime | None]:
        """Delivery id -> when the results say it was made, for every result to the address."""
        params = [
            ("email", unsettled.to),
            ("delivery_type[]", "TRANSACTION"),
            ("delivery_start", (unsettled.opened_at - self._margin).isoformat(timespec="seconds")),
            ("delivery_end", (unsettled.closed_at + self._margin).isoformat(timespec="seconds")),
            ("count", str(PAGE_SIZE)),
        ]
        found: dict[str, datetime | None] = {}
        anchor: str | None = None
        for _ in range(MAX_PAGES):
            before_request()
            page = self._client.mail_results(
                params + ([("anchor", anchor)] if anchor else []), timeout=timeout
            )
            for result in page:
                delivery_id = result.get("delivery_id")
                email = result.get("email")
                if delivery_id is None or not isinstance(email, str):
                    continue
                if email.lower() == unsettled.to.lower():
                    found.setdefault(str(delivery_id), parse_iso(result.get("created_time")))
            if len(page) < PAGE_SIZE:
                return found
            anchor = str(page[-1].get("maillog_id", ""))
        raise TransientError(
            f"more than {MAX_PAGES * PAGE_SIZE} results to {unsettled.to} in the window"
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
