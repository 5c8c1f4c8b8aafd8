"""How the queue stands, for the console's overview: rows by status, mail sent and bounced.

Each count reads at most :data:`~dispatcher.ops.reads.MAX_COUNT_PAGES` pages and then says it
is a lower bound: an overview that refreshes itself must not read a table without end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatcher.model.delivery_status import FINAL, DeliveryStatus
from dispatcher.model.row import TRANSACTIONAL
from dispatcher.ops.reads import BoundedPages
from dispatcher.storage.store import STAMPED_INDEX, WAITING_INDEX, Store
from dispatcher.support.clock import iso_utc

__all__ = ["QueueCounts", "SentCounts", "queue_counts", "sent_since"]


@dataclass(frozen=True)
class QueueCounts:
    """What is in the send table, by status; failed rows by ``error_kind`` too."""

    failed: Counter[str] = field(default_factory=Counter)
    deferred: int = 0
    scheduled: int = 0
    pending: int = 0
    #: The statuses whose count stopped short (there are at least so many).
    at_least: frozenset[str] = frozenset()
    oldest_failed_at: str | None = None
    oldest_deferred_at: str | None = None
    #: ``failed_at`` of each failed and deferred row read (the console's chart).
    stamped_at: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Rows the reputation guard holds back (their category is paused).
    paused: int = 0


@dataclass(frozen=True)
class SentCounts:
    """History items sent in a window, and what became of them."""

    since: str
    sent: int
    bounced: int
    #: True if the count stopped short of the history table's end.
    capped: bool = False
    #: Of the mail sent, how many the receiving server is known to have taken.
    delivered: int = 0
    #: Of the mail sent, how many have no final status (still accepted, or delayed).
    not_final: int = 0
    #: The window's end; None: now.
    until: str | None = None
    #: Mail sent and bounced, by category (``transactional`` where a row named none).
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Each counted item's ``sent_at`` (the console's chart), and the delivered ones', on
    #: the widest window that runs to now only: the other windows' items are among them.
    times: tuple[str, ...] = ()
    delivered_times: tuple[str, ...] = ()

    @property
    def bounce_share(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0


def queue_counts(store: Store) -> QueueCounts:
    """The send table by status: failed and deferred rows from their index (which carries
    ``error_kind``), scheduled ones counted on theirs, pending ones by a counting Scan (a
    healthy queue has few)."""
    client = store.client
    failed: Counter[str] = Counter()
    deferred = 0
    at_least: set[str] = set()
    oldest: dict[str, str | None] = {"failed": None, "deferred": None}
    stamped: dict[str, list[str]] = {"failed": [], "deferred": []}
    for status in ("failed", "deferred"):
        pages = BoundedPages(
            client.query,
            TableName=store.send_table,
            IndexName=STAMPED_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status", "#kind": "error_kind"},
            ExpressionAttributeValues={":status": {"S": status}},
            ProjectionExpression="#kind, failed_at",
        )
        for page in pages:
            for item in page.get("Items", []):
                at = item.get("failed_at", {}).get("S")
                if oldest[status] is None:  # ascending failed_at: the first is the oldest
                    oldest[status] = at
                if at:
                    stamped[status].append(at)
                if status == "failed":
                    failed[item.get("error_kind", {}).get("S", "unknown")] += 1
                else:
                    deferred += 1
        if pages.capped:
            at_least.add(status)
    scheduled = _counting(client, store.send_table, WAITING_INDEX, "scheduled")
    pending = BoundedPages(
        client.scan,
        TableName=store.send_table,
        FilterExpression="attribute_not_exists(#status)",
        ExpressionAttributeNames={"#status": "status"},
        Select="COUNT",
    )
    totals: dict[str, int] = {}
    paused = _counting(client, store.send_table, STAMPED_INDEX, "paused")
    for name, pages in (("scheduled", scheduled), ("pending", pending), ("paused", paused)):
        totals[name] = _total(pages)
        if pages.capped:
            at_least.add(name)
    return QueueCounts(
        failed, deferred, totals["scheduled"], totals["pending"], frozenset(at_least),
        oldest["failed"], oldest["deferred"],
        {status: tuple(times) for status, times in stamped.items()},
        paused=totals["paused"],
    )  # fmt: skip


def _counting(client: Any, table: str, index: str, status: str) -> BoundedPages:
    """A counting read of the rows of ``status`` in ``index``."""
    return BoundedPages(
        client.query,
        TableName=table,
        IndexName=index,
        KeyConditionExpression="#status = :status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":status": {"S": status}},
        Select="COUNT",
    )


def sent_since(
    store: Store, windows: Mapping[str, datetime | tuple[datetime, datetime]]
) -> dict[str, SentCounts]:
    """For each window (its start, or its start and end), the history items sent in it, how
    many were delivered, bounced, or have no final status yet: one filtered Scan of the
    history table from the earliest start, so callers should cache it."""
    tallies = {
        name: _Tally(iso_utc(w[0]), iso_utc(w[1])) if isinstance(w, tuple) else _Tally(iso_utc(w))
        for name, w in windows.items()
    }
    # the chart's times: of the widest window that runs to now
    charted = min((t for t in tallies.values() if t.end == "~"), key=lambda t: t.start)
    pages = BoundedPages(
        store.client.scan,
        TableName=store.history_table,
        FilterExpression="#sent_at >= :since",
        ProjectionExpression="#sent_at, #bounce, #status, #category",
        ExpressionAttributeNames={
            "#sent_at": "sent_at",
            "#bounce": "bounce_type",
            "#status": "delivery_status",
            "#category": "category",
        },
        ExpressionAttributeValues={":since": {"S": min(t.start for t in tallies.values())}},
    )
    for page in pages:
        for item in page.get("Items", []):
            when = item.get("sent_at", {}).get("S", "")
            status = item.get("delivery_status", {}).get("S", DeliveryStatus.ACCEPTED.value)
            for tally in tallies.values():
                tally.add(item, when, status)
            charted.chart(when, status)
    return {name: tally.counts(capped=pages.capped) for name, tally in tallies.items()}


class _Tally:
    """One window's counts, as the Scan's items pass by."""

    def __init__(self, start: str, end: str = "~") -> None:
        self.start, self.end = start, end  # "~": runs to now (after any ISO time)
        self._counts: Counter[str] = Counter()
        self._kinds: dict[str, Counter[str]] = {}
        self._times: dict[str, list[str]] = {"sent": [], "delivered": []}

    def add(self, item: dict[str, Any], when: str, status: str) -> None:
        if not self.start <= when < self.end:
            return
        bounced = "bounce_type" in item
        self._counts.update(
            sent=1,
            bounced=bounced,
            delivered=status in _DELIVERED,
            not_final=status in _NOT_FINAL,
        )
        category = item.get("category", {}).get("S", TRANSACTIONAL)
        self._kinds.setdefault(category, Counter()).update(sent=1, bounced=bounced)

    def chart(self, when: str, status: str) -> None:
        """Keep the item's time for the chart (this is the charted window)."""
        if when >= self.start:
            self._times["sent"].append(when)
            if status in _DELIVERED:
                self._times["delivered"].append(when)

    def counts(self, *, capped: bool) -> SentCounts:
        counts = self._counts
        return SentCounts(
            self.start,
            counts["sent"],
            counts["bounced"],
            capped,
            delivered=counts["delivered"],
            not_final=counts["not_final"],
            until=self.end if self.end != "~" else None,
            by_category={
                c: {"sent": k["sent"], "bounced": int(k["bounced"])}
                for c, k in sorted(self._kinds.items())
            },
            times=tuple(self._times["sent"]),
            delivered_times=tuple(self._times["delivered"]),
        )


#: Taken by the receiving server: delivered, or a complaint (which comes after delivery).
_DELIVERED = frozenset({DeliveryStatus.DELIVERED.value, DeliveryStatus.COMPLAINED.value})
#: No final status reported yet.
_NOT_FINAL = frozenset(s.value for s in DeliveryStatus if s not in FINAL)


def _total(pages: BoundedPages) -> int:
    """A counting (``Select="COUNT"``) read's total; ``pages.capped`` then says if it is all."""
    return sum(page.get("Count", 0) for page in pages)
