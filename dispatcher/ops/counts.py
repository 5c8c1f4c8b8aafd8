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
    bounds = {
        name: (iso_utc(w[0]), iso_utc(w[1])) if isinstance(w, tuple) else (iso_utc(w), "~")
        for name, w in windows.items()
    }
    counts: dict[str, Counter[str]] = {name: Counter() for name in bounds}
    kinds: dict[str, dict[str, Counter[str]]] = {name: {} for name in bounds}
    # the chart's times: of the widest window that runs to now
    charted = min((n for n, (_, end) in bounds.items() if end == "~"), key=lambda n: bounds[n][0])
    times: dict[str, list[str]] = {"sent": [], "delivered": []}
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
        ExpressionAttributeValues={":since": {"S": min(start for start, _ in bounds.values())}},
    )
    for page in pages:
        for item in page.get("Items", []):
            when = item.get("sent_at", {}).get("S", "")
            status = item.get("delivery_status", {}).get("S", DeliveryStatus.ACCEPTED.value)
            for name, (start, end) in bounds.items():
                if start <= when < end:
                    counts[name].update(
                        sent=1,
                        bounced="bounce_type" in item,
                        delivered=status in _DELIVERED,
                        not_final=status in _NOT_FINAL,
                    )
                    category = item.get("category", {}).get("S", TRANSACTIONAL)
                    kinds[name].setdefault(category, Counter()).update(
                        sent=1, bounced="bounce_type" in item
                    )
            if when >= bounds[charted][0]:
                times["sent"].append(when)
                if status in _DELIVERED:
                    times["delivered"].append(when)
    return {
        name: SentCounts(
            start,
            counts[name]["sent"],
            counts[name]["bounced"],
            pages.capped,
            delivered=counts[name]["delivered"],
            not_final=counts[name]["not_final"],
            until=end if end != "~" else None,
            by_category={
                c: {"sent": k["sent"], "bounced": int(k["bounced"])}
                for c, k in sorted(kinds[name].items())
            },
            times=tuple(times["sent"]) if name == charted else (),
            delivered_times=tuple(times["delivered"]) if name == charted else (),
        )
        for name, (start, end) in bounds.items()
    }


#: Taken by the receiving server: delivered, or a complaint (which comes after delivery).
_DELIVERED = frozenset({DeliveryStatus.DELIVERED.value, DeliveryStatus.COMPLAINED.value})
#: No final status reported yet.
_NOT_FINAL = frozenset(s.value for s in DeliveryStatus if s not in FINAL)


def _total(pages: BoundedPages) -> int:
    """A counting (``Select="COUNT"``) read's total; ``pages.capped`` then says if it is all."""
    return sum(page.get("Count", 0) for page in pages)
