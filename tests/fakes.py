"""In-memory fakes shared by the tests: clocks, a provider, stream records."""

from __future__ import annotations

import heapq
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.model.message import Message
from dispatcher.providers.base import Accepted

EPOCH = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class FakeClock:
    """Time that moves only when someone sleeps; records every sleep. Single-threaded use."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self._start = start
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.t)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ThreadTimeClock:
    """Virtual time kept per thread, for measuring concurrent work without waiting for it.

    Each worker thread accumulates the time it sleeps; ``horizon`` is the latest any thread
    reached, i.e. how long the work would have taken in real time. ``real_block`` makes each
    sleep also block briefly for real, so that the thread pool spreads work over all its
    workers as it would if the sleeps were real.
    """

    def __init__(self, start: datetime = EPOCH, real_block: float = 0.0) -> None:
        self._start = start
        self._local = threading.local()
        self._lock = threading.Lock()
        self._real_block = real_block
        self.horizon = 0.0

    def monotonic(self) -> float:
        return float(getattr(self._local, "t", 0.0))

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        t = self.monotonic() + max(0.0, seconds)
        self._local.t = t
        with self._lock:
            self.horizon = max(self.horizon, t)
        if self._real_block:
            time.sleep(self._real_block)


class FakeProvider:
    """A provider whose every send takes ``latency`` on ``clock`` and succeeds."""

    name = "fake"

    def __init__(self, clock: Any, latency: float = 0.0) -> None:
        self._clock = clock
        self._latency = latency
        self._lock = threading.Lock()
        self.sent: list[Message] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def send(self, message: Message, *, timeout: float) -> Accepted:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._clock.sleep(self._latency)
            with self._lock:
                self.sent.append(message)
                return Accepted(str(len(self.sent)))
        finally:
            with self._lock:
                self.in_flight -= 1


class SerializedClient:
    """Runs a boto3 client's calls one at a time.

    moto's in-process backend is not thread-safe (``TransactWriteItems`` deep-copies tables
    that other threads are writing), while DynamoDB itself is. The dispatcher's worker threads
    share one client, so in-process tests serialise the calls, as a real endpoint would
    isolate them.
    """

    _lock = threading.RLock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_") or name in ("get_paginator",):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def throttle_first_call(client: Any, operation: str) -> list[int]:
    """Make the first ``operation`` call (e.g. ``TransactWriteItems``) of ``client`` fail as
    throttled; the list returned gets one item when it did."""
    from botocore.exceptions import ClientError

    failures: list[int] = []

    def fail(**_: Any) -> None:
        if not failures:
            failures.append(1)
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
                operation,
            )

    client.meta.events.register(f"before-call.dynamodb.{operation}", fail)
    return failures


def move_row(client: Any, row_id: str, subject: str) -> None:
    """The dispatcher's move in miniature: history item updated, row deleted on condition that
    its subject is still ``subject``; tables `h` (id, sent_at) and `s` (id)."""
    client.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": "h",
                    "Key": {"id": {"S": row_id}, "sent_at": {"S": "t"}},
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "s"},
                    "ExpressionAttributeValues": {":s": {"S": subject}},
                }
            },
            {
                "Delete": {
                    "TableName": "s",
                    "Key": {"id": {"S": row_id}},
                    "ConditionExpression": "#sub = :sub",
                    "ExpressionAttributeNames": {"#sub": "subject"},
                    "ExpressionAttributeValues": {":sub": {"S": subject}},
                }
            },
        ]
    )


class EventClock:
    """One virtual time for a known number of threads: it moves to the earliest wake-up once
    every thread is asleep (or has left), so concurrent senders meet a provider's window at
    the instants they would in real time, and a minute of sending takes a moment."""

    def __init__(self, threads: int, start: datetime = EPOCH) -> None:
        self._start = start
        self._cv = threading.Condition()
        self._now = 0.0
        self._running = threads
        self._wakes: list[tuple[float, int]] = []
        self._released: set[int] = set()
        self._tickets = 0

    def monotonic(self) -> float:
        return self._now

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._now)

    def sleep(self, seconds: float) -> None:
        with self._cv:
            self._tickets += 1
            ticket = self._tickets
            heapq.heappush(self._wakes, (self._now + max(0.0, seconds), ticket))
            self._running -= 1
            self._advance()
            while ticket not in self._released:
                self._cv.wait()
            self._released.discard(ticket)

    def leave(self) -> None:
        """A thread is done: time no longer waits for it."""
        with self._cv:
            self._running -= 1
            self._advance()

    def _advance(self) -> None:
        if self._running > 0 or not self._wakes:
            return
        self._now = max(self._now, self._wakes[0][0])
        while self._wakes and self._wakes[0][0] <= self._now:
            _, ticket = heapq.heappop(self._wakes)
            self._released.add(ticket)
            self._running += 1
        self._cv.notify_all()
