"""Catch-up: bounces whose webhook never came, read from blastengine's delivery logs.

Webhooks get lost (the receiver was down, a deploy was under way). ``GET /logs/mails/results``
lists every recipient's result; a catch-up reads the bounce results of a window, page by page,
and applies each one the history does not have yet through the same idempotent path as the
webhook (:class:`~dispatcher.bounces.ledger.BounceLedger`). It then joins orphan events whose
history item has appeared since. The same pages carry the results that are no bounce:
``SENT`` moves the mail's delivery status to ``delivered``, ``RETRY`` to ``delayed``
(:mod:`dispatcher.tracking.book`). ``dispatcher reconcile --since 2h`` runs it by hand; the
sweeper runs it on its slower schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dispatcher.bounces.event import BLASTENGINE_KINDS, BounceEvent, BounceType
from dispatcher.bounces.ledger import BounceLedger
from dispatcher.config.settings import Settings
from dispatcher.providers.blastengine.results import MailResult
from dispatcher.tracking.mail_log import delivery_report

if TYPE_CHECKING:
    from dispatcher.providers.blastengine.client import BlastengineClient

__all__ = ["PAGE_SIZE", "ReconcileResult", "Reconciler"]

#: Results per page: the API's largest.
PAGE_SIZE = 1000
#: Pages one run reads at most; the next run goes on from the window's start again.
MAX_PAGES = 50


@dataclass
class ReconcileResult:
    """What one catch-up found and did."""

    results: int = 0  # bounce results read
    applied: int = 0  # of them, new to the history
    statuses: int = 0  # history items whose delivery status moved (delivered, delayed)
    joined_orphans: int = 0
    truncated: bool = False


class Reconciler:
    """Reads bounce results from the provider and applies the missing ones."""

    def __init__(self, *, provider: BlastengineClient, ledger: BounceLedger) -> None:
        self._provider = provider
        self._ledger = ledger

    @classmethod
    def from_settings(cls, settings: Settings, *, dynamodb_client: Any = None) -> Reconciler | None:
        """Built as the sweeper's Lambda entry builds it; None without a bounce table."""
        from dispatcher.providers.blastengine.client import BlastengineClient
        from dispatcher.providers.blastengine.credentials import credentials_loader

        if not (settings.bounce_table_name and settings.suppression_table_name):
            return None
        ledger = BounceLedger.from_settings(settings, dynamodb_client=dynamodb_client)
        provider = BlastengineClient(
            base_url=settings.blastengine_base_url, credentials=credentials_loader(settings)
        )
        return cls(provider=provider, ledger=ledger)

    def catch_up(self, since: datetime, until: datetime) -> ReconcileResult:
        result = ReconcileResult()
        anchor: str | None = None
        for _ in range(MAX_PAGES):
            params = [
                # Whole seconds, as the API takes them: the start rounded down, the end up,
                # so no result of the window's last second falls out of it.
                ("delivery_start", since.isoformat(timespec="seconds")),
                ("delivery_end", (until + timedelta(seconds=1)).isoformat(timespec="seconds")),
                ("count", str(PAGE_SIZE)),
                *(("status[]", kind.value) for kind in BLASTENGINE_KINDS),
                *(("status[]", status) for status in ("SENT", "RETRY")),
            ]
            if anchor is not None:
                params.append(("anchor", anchor))
            page = self._provider.mail_results(params)
            for item in page:
                found = MailResult.parse(item)
                report = delivery_report(found) if found is not None else None
                if report is not None:  # delivered, or still being retried
                    result.statuses += self._ledger.statuses.record(report)
                    continue
                event = _event(found) if found is not None else None
                if event is None:
                    continue
                result.results += 1
                if not self._recorded(event):
                    self._ledger.apply(event)
                    result.applied += 1
            if len(page) < PAGE_SIZE:
                break
            anchor = str(page[-1].get("maillog_id"))
        else:
            result.truncated = True
        result.joined_orphans = self._ledger.join_orphans()
        self._ledger.flush_events()
        return result

    def join_orphans(self) -> int:
        """Join orphan bounces whose history item exists by now (every sweep does this)."""
        joined = self._ledger.join_orphans()
        self._ledger.flush_events()
        return joined

    def _recorded(self, event: BounceEvent) -> bool:
        """True if the history already has this address's bounce for this delivery."""
        return any(
            event.address in item.get("bounced_addresses", {}).get("SS", [])
            for item in self._ledger.deliveries(event.delivery_id)
        )


def _event(result: MailResult) -> BounceEvent | None:
    try:
        kind = BounceType(result.status)
    except ValueError:
        return None  # SENT, RETRY: not a bounce
    if result.at is None:
        return None
    return BounceEvent(
        type=kind,
        at=result.at,
        address=result.address,
        delivery_id=result.delivery_id,
        code=result.code[:16] if result.code else None,
        message=result.message[:500] if result.message else None,
    )
