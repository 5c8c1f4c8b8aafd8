"""How the queue stands, for the console's overview: rows by status, mail sent and bounced.

Each count reads at most :data:`~dispatcher.ops.reads.MAX_COUNT_PAGES` pages and then says it
is a lower bound: an overview that refreshes itself must not read a table without end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


@dataclass(frozen=True)
class SentCounts:
    """History items sent since a time, and how many of them bounced."""

    since: str
    sent: int
    bounced: int
    #: True if the count stopped short of the history table's end.
    capped: bool = False
    #: Of the mail sent, how many the receiving server is known to have taken.
    delivered: int = 0
    #: Each counted item's ``sent_at`` (the console's chart), on the widest window only:
    #: every other window's items are among them.
    times: tuple[str, ...] = ()

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
    scheduled = BoundedPages(
        client.query,
        TableName=store.send_table,
        IndexName=WAITING_INDEX,
        KeyConditionExpression="#status = :status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":status": {"S": "scheduled"}},
        Select="COUNT",
    )
    pending = BoundedPages(
        client.scan,
        TableName=store.send_table,
        FilterExpression="attribute_not_exists(#status)",
        ExpressionAttributeNames={"#status": "status"},
        Select="COUNT",
    )
    totals: dict[str, int] = {}
    for name, pages in (("scheduled", scheduled), ("pending", pending)):
        totals[name] = _total(pages)
        if pages.capped:
            at_least.add(name)
    return QueueCounts(
        failed, deferred, totals["scheduled"], totals["pending"], frozenset(at_least),
        oldest["failed"], oldest["deferred"],
        {status: tuple(times) for status, times in stamped.items()},
    )  # fmt: skip


def sent_since(store: Store, windows: dict[str, datetime]) -> dict[str, SentCounts]:
    """For each window's start, the history items sent at or after it and how many bounced:
    one filtered Scan of the history table from the earliest start, so callers should cache
    it."""
    stamps = {name: iso_utc(start) for name, start in windows.items()}
    sent: Counter[str] = Counter()
    bounced: Counter[str] = Counter()
    delivered: Counter[str] = Counter()
    widest = min(stamps, key=stamps.__getitem__)
    times: list[str] = []
    pages = BoundedPages(
        store.client.scan,
        TableName=store.history_table,
        FilterExpression="#sent_at >= :since",
        ProjectionExpression="#sent_at, #bounce, #status",
        ExpressionAttributeNames={
            "#sent_at": "sent_at",
            "#bounce": "bounce_type",
            "#status": "delivery_status",
        },
        ExpressionAttributeValues={":since": {"S": stamps[widest]}},
    )
    for page in pages:
        for item in page.get("Items", []):
            when = item.get("sent_at", {}).get("S", "")
            times.append(when)
            for name, stamp in stamps.items():
                if when >= stamp:
                    sent[name] += 1
                    bounced[name] += "bounce_type" in item
                    delivered[name] += _delivered(item)
    return {
        name: SentCounts(
            stamp,
            sent[name],
            bounced[name],
            pages.capped,
            delivered=delivered[name],
            times=tuple(times) if name == widest else (),
        )
        for name, stamp in stamps.items()
    }


def _delivered(item: dict[str, Any]) -> bool:
    """Taken by the receiving server: delivered, or a complaint (which comes after delivery)."""
    return item.get("delivery_status", {}).get("S") in ("delivered", "complained")


def _total(pages: BoundedPages) -> int:
    """A counting (``Select="COUNT"``) read's total; ``pages.capped`` then says if it is all."""
    return sum(page.get("Count", 0) for page in pages)
