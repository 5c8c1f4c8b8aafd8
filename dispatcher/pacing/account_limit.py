"""The provider account's one rate limit, shared by every concurrent invocation.

A DynamoDB stream has a shard per table partition and Lambda runs an invocation per shard (and
per ``ParallelizationFactor`` within one), so a budget kept inside an invocation multiplies
with a shard count nobody chose. The account's limit lives in one DynamoDB item instead:
``next_slot``, the wall-clock time of the account's next free request slot (the "theoretical
arrival time" of GCRA, the generic cell rate algorithm). An invocation leases a *grant* of a
few consecutive slots, ``1/R`` apart, with one conditional write that moves ``next_slot`` past
them, and spends the grant from memory. Slots are instants, not tokens: a grant nobody uses
simply passes, so an invocation that dies holding one costs the account at most that grant's
span of time and leaves nothing to clean up.

Costs, per grant: one conditional ``UpdateItem``, idle or busy (an atomic addition when other
invocations hold later slots, so they never conflict); two when the account changed between
idle and busy since the invocation last looked (the refused write returns the item, so no
read is needed). A grant covers the sends the invocation still expects (its batch's
records), up to :data:`GRANT_SECONDS` of the limit, so the limiter adds a fraction of a write
per mail; what is left of the last grant when the invocation ends is given back if nobody
leased after it. When the limit table cannot be reached (throttled, an outage), the
invocation paces itself alone at ``R`` for :data:`FALLBACK_SECONDS` before it asks again:
the provider's own ``X-RateLimit-Remaining`` and 429 pauses (:mod:`dispatcher.pacing.retry`)
remain the backstop.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.pacing.invocation_bucket import BucketTimeoutError, TokenBucket
from dispatcher.pacing.window_watch import WindowWatch
from dispatcher.storage.dynamodb import seconds_value
from dispatcher.support.clock import Clock, Deadline
from dispatcher.support.observability import logger

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mypy_boto3_dynamodb import DynamoDBClient

    from dispatcher.config.settings import Settings

__all__ = ["FALLBACK_SECONDS", "GRANT_SECONDS", "LimitTable", "ShareOfTheLimit", "SharedBucket"]

#: The largest grant, in seconds of the account's limit: small enough that a grant left
#: unused (a dead invocation's) costs little, large enough that leases are rare.
GRANT_SECONDS = 0.25
#: The largest grant in slots, whatever the limit.
MAX_GRANT = 25
#: How long an invocation paces itself alone after the limit table failed it.
FALLBACK_SECONDS = 5.0
#: Conditional writes one lease may try before it counts as the table failing (contention).
LEASE_ATTEMPTS = 16


class LimitTable:
    """The limit item in DynamoDB: leases grants off it, pushes it forward on a pause."""

    @classmethod
    def per_provider(
        cls, settings: Settings, client: DynamoDBClient, names: Iterable[str]
    ) -> dict[str, LimitTable]:
        """Each named provider's item of ``RATE_LIMIT_TABLE_NAME``; none without the table
        (each invocation then paces on its own)."""
        table = settings.rate_limit_table_name
        return {name: cls(client, table, key=name) for name in names} if table else {}

    def __init__(self, client: DynamoDBClient, table: str, key: str) -> None:
        self._client = client
        self._table = table
        self._key = {"name": {"S": key}}
        self._last_seen = float("-inf")  # the account's next free slot, as last seen

    def lease(self, slots: int, interval: float, now: float, latest: float) -> float | None:
        """Take ``slots`` consecutive slots; returns the first one's time, or None when the
        account's next free slot is later than ``latest`` (nothing is taken then).

        Two writes serve every case without a read. Idle (the next free slot has passed):
        set it to ``now`` plus the grant, on condition that it has passed. Busy: add the
        grant to it, on condition that it is still ahead (and not past ``latest``); an
        addition never loses to another invocation's, so a busy account has no contention.
        Each lease tries first the one that fitted last time.

        Raises ``ClientError``/``BotoCoreError`` when the table fails, or when the account
        flips between idle and busy for :data:`LEASE_ATTEMPTS` tries."""
        span = slots * interval
        busy = self._last_seen > now
        for _ in range(LEASE_ATTEMPTS):
            try:
                if busy:
                    answer = self._update(
                        "SET next_slot = next_slot + :span",
                        "next_slot > :now AND next_slot <= :latest",
                        {":span": span, ":now": now, ":latest": latest},
                        ReturnValues="UPDATED_NEW",
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                    end = float(answer["Attributes"]["next_slot"]["N"])
                else:
                    end = now + span
                    self._update(
                        "SET next_slot = :end",
                        "attribute_not_exists(next_slot) OR next_slot <= :now",
                        {":now": now, ":end": end},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                self._last_seen = end
                return end - span
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                old: dict[str, Any] = exc.response.get("Item", {})  # type: ignore[assignment]
                held = old.get("next_slot", {}).get("N")
            self._last_seen = float(held) if held is not None else float("-inf")
            if self._last_seen > latest:
                return None
            busy = self._last_seen > now
        raise ClientError(
            {"Error": {"Code": "LeaseContention", "Message": f"{LEASE_ATTEMPTS} leases lost"}},
            "UpdateItem",
        )

    def give_back(self, end: float, first_unused: float) -> None:
        """Return the unused tail of the last grant, if nobody leased after it."""
        # Leased past, or the table failed: the slots simply pass.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._update(
                "SET next_slot = :first", "next_slot = :end", {":first": first_unused, ":end": end}
            )

    def push(self, until: float) -> None:
        """No slot before ``until`` for anyone (the provider said to wait)."""
        # Already later, or the table failed: each sender's own 429 pauses it anyway.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._update(
                "SET next_slot = :until",
                "attribute_not_exists(next_slot) OR next_slot < :until",
                {":until": until},
            )

    def _update(
        self, expression: str, condition: str, times: dict[str, float], **extra: Any
    ) -> Any:
        """One conditional write of the limit item; ``times`` are epoch seconds."""
        return self._client.update_item(
            TableName=self._table,
            Key=self._key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues={name: seconds_value(t) for name, t in times.items()},
            **extra,
        )


class SharedBucket:
    """A :class:`~dispatcher.pacing.invocation_bucket.TokenBucket` whose slots come from the
    account's shared limit (:class:`LimitTable`); thread-safe, one per invocation."""

    def __init__(self, *, table: LimitTable, rate: float, clock: Clock, expected: int = 1) -> None:
        """``expected``: how many requests the invocation means to make (its records); it
        sizes the grants, so a small batch does not hold slots it will never use."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._expected = expected
        self._table = table
        self._rate = rate
        self._clock = clock
        self._max_grant = max(1, min(MAX_GRANT, round(rate * GRANT_SECONDS)))
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()  # granted, unspent slot times (wall clock)
        self._grant_end: float | None = None  # where the last grant left ``next_slot``
        self._waiting = 0
        self._paused_until = float("-inf")
        self._alone = TokenBucket(rate=rate, clock=clock)
        self._alone_until = float("-inf")
        self.leases = 0
        self.window = WindowWatch(rate=rate, clock=clock)

    @property
    def rate(self) -> float:
        return self._rate

    def acquire(self, deadline: Deadline | None = None, *, reserve: float = 0.0) -> None:
        """Block until this caller may start a request (as ``TokenBucket.acquire``)."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                with self._lock:
                    now = self._wall()
                    if now < self._alone_until:
                        slot = None
                    else:
                        slot = self._next_slot(now, deadline, reserve)
                if slot is None:
                    self._alone.acquire(deadline, reserve=reserve)
                    return
                if slot > now:
                    self._clock.sleep(slot - now)
                with self._lock:
                    if self._wall() >= self._paused_until:
                        return
        finally:
            with self._lock:
                self._waiting -= 1

    def pause(self, seconds: float) -> None:
        """Stop every sender of the account for ``seconds`` (a 429's ``Retry-After``)."""
        until = self._wall() + max(0.0, seconds)
        with self._lock:
            self._paused_until = max(self._paused_until, until)
            while self._slots and self._slots[0] < until:
                self._slots.popleft()  # they would be refused too
        self._alone.pause(seconds)
        self._table.push(until)

    def release(self) -> None:
        """The invocation is done: give back what is left of its last grant."""
        with self._lock:
            now = self._wall()
            unused = [s for s in self._slots if s > now]
            end, self._grant_end = self._grant_end, None
            self._slots.clear()
        if unused and end is not None:  # the unspent slots are the grant's tail
            self._table.give_back(end, unused[0])

    def _next_slot(self, now: float, deadline: Deadline | None, reserve: float) -> float | None:
        """The next granted slot, leasing a grant when none is left; None: pace alone."""
        interval = self.window.interval
        while self._slots and self._slots[0] < now - interval:
            self._slots.popleft()  # passed while nobody asked: spent on nothing
        if not self._slots:
            latest = now + (deadline.remaining() - reserve if deadline else 900.0)
            wanted = max(1, min(self._max_grant, max(self._expected, self._waiting)))
            try:
                first = self._table.lease(wanted, interval, now, latest)
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "the shared rate limit is unreachable; pacing this invocation alone",
                    extra={"error": f"{type(exc).__name__}: {exc}", "seconds": FALLBACK_SECONDS},
                )
                self._alone_until = now + FALLBACK_SECONDS
                return None
            if first is None:
                raise BucketTimeoutError("the account's next request slot is past the deadline")
            self.leases += 1
            self._slots.extend(first + i * interval for i in range(wanted))
            self._grant_end = first + wanted * interval
        slot = max(self._slots[0], now)
        if deadline is not None and slot - now + reserve > deadline.remaining():
            raise BucketTimeoutError(
                f"next request slot is {slot - now:.2f}s away, past the deadline"
            )
        self._slots.popleft()
        self._expected -= 1
        return max(slot, self._paused_until)

    def _wall(self) -> float:
        return self._clock.now().timestamp()


class ShareOfTheLimit:
    """A side user's share of the account's limit (the mail log's look-ups): each request
    takes one slot of the account, ``1/R`` of its time as a send does, and the side user's
    own requests are spaced ``1/(share * R)`` apart, so it never takes more than its share.

    (A :class:`SharedBucket` at ``share * R`` would lease each request a span of ``1/(share
    * R)`` seconds of the account's time: every sender of the account waiting that long.)
    """

    def __init__(self, account: SharedBucket, *, share: float, clock: Clock) -> None:
        self._account = account
        self._own = TokenBucket(rate=share * account.rate, clock=clock)

    @property
    def rate(self) -> float:
        return self._own.rate

    @property
    def window(self) -> WindowWatch:
        return self._account.window

    def acquire(self, deadline: Deadline | None = None, *, reserve: float = 0.0) -> None:
        self._own.acquire(deadline, reserve=reserve)
        self._account.acquire(deadline, reserve=reserve)

    def pause(self, seconds: float) -> None:
        self._own.pause(seconds)
        self._account.pause(seconds)

    def release(self) -> None:
        self._account.release()
