"""The sweeper's work: re-firing rows whose wait is over (``DESIGN.md``, "Deferred retry").

Its Lambda entry point is :mod:`dispatcher.sweeper`.

``deferred`` rows (a transient failure, waiting for their backoff) and ``scheduled`` rows (a
future ``send_after``) carry ``retry_at`` and so sit in the send table's sparse index. A sweep
queries that index for rows that are due and bumps their ``revision``; the resulting MODIFY
goes through the stream to the dispatcher like any edit. Bounded per run in rows and in time;
running it twice, or two at once, is harmless.

A due row whose ``expires_at`` has passed is not re-fired: the sweeper stamps it ``failed``
(``expired``) itself, so it is never sent (a row waiting on a look-up is re-fired all the
same: whether its mail went out is settled first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from dispatcher.config.settings import Settings
from dispatcher.flow.failure_policy import FailurePolicy
from dispatcher.model.message import expiry_of
from dispatcher.model.row import Row, RowStatus
from dispatcher.notify.delivery_events import EventPublisher, stamp_event
from dispatcher.storage.dynamodb import BATCH_GET_LIMIT
from dispatcher.storage.store import Store
from dispatcher.support.clock import SYSTEM_CLOCK, Clock, Deadline, iso_utc

__all__ = ["LEASE_SECONDS", "MAX_ROWS_PER_RUN", "SweepResult", "Sweeper"]

#: Rows re-fired per run at most; the rest wait for the next run (every minute).
MAX_ROWS_PER_RUN = 1000
#: How long a fired row is hidden from later sweeps: longer than the longest invocation
#: (15 minutes), so a second sweep never fires a row whose send is still in flight.
LEASE_SECONDS = 16 * 60


@dataclass
class SweepResult:
    """What one run did."""

    fired: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # changed by someone else meanwhile
    expired: list[str] = field(default_factory=list)  # past expires_at: failed, not fired
    truncated: bool = False  # stopped by the row or time bound; the next run goes on

    @property
    def handled(self) -> int:
        return len(self.fired) + len(self.moved) + len(self.expired)


class Sweeper:
    """Finds due rows through the sparse index and re-fires them."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_rows: int = MAX_ROWS_PER_RUN,
        events: EventPublisher | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_rows = max_rows
        self._events = events

    @classmethod
    def from_settings(cls, settings: Settings, *, dynamodb_client: Any = None) -> Sweeper:
        return cls(
            Store.from_settings(settings, dynamodb_client),
            events=EventPublisher.from_settings(settings),
        )

    def sweep(self, deadline: Deadline | None = None) -> SweepResult:
        now = self._clock.now()
        due_by = iso_utc(now)
        lease_until = iso_utc(now + timedelta(seconds=LEASE_SECONDS))
        result = SweepResult()
        try:
            for row, whole in self._due(due_by):
                if result.handled >= self._max_rows or (
                    deadline is not None and deadline.remaining() <= 0
                ):
                    result.truncated = True
                    break
                expired = self._expired(row, whole, now)
                if expired is not None:
                    self._expire(*expired, now, result)
                elif self._store.refire(row, now=due_by, lease_until=lease_until):
                    result.fired.append(row.id)
                else:
                    result.moved.append(row.id)
            return result
        finally:
            if self._events is not None:
                self._events.flush()

    def _due(self, due_by: str) -> Iterator[tuple[Row, Row | None]]:
        """Due deferred rows, then due scheduled ones, each with the row as it is now. The
        index holds keys only: the rows themselves (for ``expires_at``) are read a page at a
        time, one BatchGetItem per hundred due rows."""
        for status in (RowStatus.DEFERRED, RowStatus.SCHEDULED):
            due = self._store.due_rows(status.value, due_by)
            while page := list(islice(due, BATCH_GET_LIMIT)):
                wholes = self._store.get_rows([row.id for row in page])
                yield from ((row, wholes.get(row.id)) for row in page)

    def _expired(self, row: Row, whole: Row | None, now: datetime) -> tuple[Row, datetime] | None:
        """The whole row and its expiry if it is past and no look-up is pending on it."""
        if whole is None or whole.status != row.status or whole.retry_at != row.retry_at:
            return None  # moved on: the re-fire's condition will say so
        expiry = expiry_of(whole)
        if expiry is None or expiry > now or whole.unsettled is not None:
            return None
        return whole, expiry

    def _expire(self, row: Row, expiry: datetime, now: datetime, result: SweepResult) -> None:
        stamp = FailurePolicy.expired(expiry, prior=row.attempts, now=now)
        if not self._store.stamp(row, stamp):
            result.moved.append(row.id)  # edited meanwhile: its own record decides
            return
        result.expired.append(row.id)
        if self._events is not None:
            self._events.add([stamp_event(row, stamp)])
