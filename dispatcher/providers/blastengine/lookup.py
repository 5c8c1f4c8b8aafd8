"""Asking blastengine whether it took a mail whose answer never came.

The transaction API takes no idempotency key and no client reference, so the question is put
the way ``BLASTENGINE.md`` ("Looking deliveries up") allows: the per-recipient results to the
row's ``to`` within the send's window (widened by a margin for clocks), then each candidate
delivery's stored ``subject``, ``text_part`` and ``html_part`` compared with digests of what
was sent. Every request takes a slot of the account's rate limit first (``before_request``).
A look-up costs one request for the results plus one per candidate not yet seen by this
execution environment.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from dispatcher.model.row import normalise_address
from dispatcher.model.unsettled import Unsettled, content_digest
from dispatcher.providers.base import Found
from dispatcher.providers.blastengine.client import BlastengineClient
from dispatcher.providers.blastengine.results import MailResult
from dispatcher.providers.errors import TransientError
from dispatcher.support.clock import parse_iso

__all__ = ["CLOCK_MARGIN_SECONDS", "MAX_CANDIDATES", "QUERY_MARGIN_SECONDS", "BlastengineLookup"]

#: Added on both sides of the window in the query: it is not known which of its times
#: ``delivery_start``/``delivery_end`` filter on (creation, or delivery after queueing).
QUERY_MARGIN_SECONDS = 120.0
#: How far blastengine's clock and ours may disagree: a result whose ``created_time`` (when
#: blastengine took it) lies further than this outside the window is not this send.
CLOCK_MARGIN_SECONDS = 10.0
#: Results per page (the API's most), and pages read at most.
PAGE_SIZE = 1000
MAX_PAGES = 5
#: Deliveries to one address around one window compared at most (each a request against the
#: account's limit, once per execution environment); beyond it the look-up fails (the row
#: keeps waiting, then fails saying so) rather than spend the account's limit for minutes.
MAX_CANDIDATES = 1000
#: Deliveries' content digests kept per execution environment: a delivery's subject and body
#: never change, and the unanswered sends of one burst share their candidates.
DIGEST_CACHE_SIZE = 4096


class BlastengineLookup:
    """Finds the delivery an ambiguous send became, if blastengine has it."""

    name = "blastengine"

    def __init__(self, client: BlastengineClient) -> None:
        self._client = client
        self._digests: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def find(
        self, unsettled: Unsettled, *, timeout: float, before_request: Callable[[], None]
    ) -> Found | None:
        """The delivery that matches ``unsettled``, or None if blastengine has none.

        Candidates closest to the window are compared first, so a mail that was taken is
        usually found with one detail request; "none" needs every candidate compared.

        Raises
        ------
        ProviderError
            The look-up itself failed (an error answer, no answer, too many candidates):
            nothing can be concluded.
        """
        candidates = self._candidates(unsettled, timeout, before_request)
        if len(candidates) > MAX_CANDIDATES:
            raise TransientError(
                f"{len(candidates)} deliveries to {unsettled.to} around the window: more than "
                f"{MAX_CANDIDATES} to compare"
            )
        for delivery_id, taken_at in candidates:
            if self._digest(delivery_id, timeout, before_request) in unsettled.digests:
                return Found(delivery_id=delivery_id, taken_at=taken_at or unsettled.opened_at)
        return None

    def _digest(self, delivery_id: str, timeout: float, before_request: Callable[[], None]) -> str:
        with self._lock:
            if delivery_id in self._digests:
                self._digests.move_to_end(delivery_id)
                return self._digests[delivery_id]
        before_request()
        detail = self._client.delivery(delivery_id, timeout=timeout)
        digest = content_digest(
            _text(detail.get("subject")),
            _text(detail.get("text_part")),
            _text(detail.get("html_part")),
        )
        with self._lock:
            self._digests[delivery_id] = digest
            while len(self._digests) > DIGEST_CACHE_SIZE:
                self._digests.popitem(last=False)
        return digest

    def _candidates(
        self, unsettled: Unsettled, timeout: float, before_request: Callable[[], None]
    ) -> list[tuple[str, datetime | None]]:
        """(delivery id, when blastengine took it) of every result to the address around the
        window, closest to the window first."""
        query_margin = timedelta(seconds=QUERY_MARGIN_SECONDS)
        params = [
            ("email", unsettled.to),
            ("delivery_type[]", "TRANSACTION"),
            ("delivery_start", (unsettled.opened_at - query_margin).isoformat(timespec="seconds")),
            ("delivery_end", (unsettled.closed_at + query_margin).isoformat(timespec="seconds")),
            ("count", str(PAGE_SIZE)),
        ]
        margin = timedelta(seconds=CLOCK_MARGIN_SECONDS)
        earliest, latest = unsettled.opened_at - margin, unsettled.closed_at + margin
        found: dict[str, datetime | None] = {}
        anchor: str | None = None
        for _ in range(MAX_PAGES):
            before_request()
            page = self._client.mail_results(
                params + ([("anchor", anchor)] if anchor else []), timeout=timeout
            )
            for result in filter(None, map(MailResult.parse, page)):
                taken_at = parse_iso(result.taken_at)
                if result.address != normalise_address(unsettled.to) or (
                    taken_at is not None and not earliest <= taken_at <= latest
                ):
                    continue
                found.setdefault(result.delivery_id, taken_at)
            if len(page) < PAGE_SIZE:
                return sorted(found.items(), key=lambda item: _distance(item[1], unsettled))
            anchor = str(page[-1].get("maillog_id", ""))
        raise TransientError(
            f"more than {MAX_PAGES * PAGE_SIZE} results to {unsettled.to} around the window"
        )


def _distance(taken_at: datetime | None, unsettled: Unsettled) -> float:
    """Seconds outside the window (0 inside it); unknown times last."""
    if taken_at is None:
        return float("inf")
    if taken_at < unsettled.opened_at:
        return (unsettled.opened_at - taken_at).total_seconds()
    return max(0.0, (taken_at - unsettled.closed_at).total_seconds())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
