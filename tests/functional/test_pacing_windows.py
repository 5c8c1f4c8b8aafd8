"""Pacing reaches the provider's limit, whatever shape the limit takes, without meeting it.

Concurrent senders (``SEND_CONCURRENCY`` at its default) run on one virtual clock against a
provider that counts requests the way blastengine describes (fixed one-second windows, with
the window in its answers), the way an API gateway does (a token bucket), and the way SES's
maximum send rate is met (a fixed window whose answers say nothing of it). Each request takes
its latency, half of it before the provider counts it, with jitter; the 429s are counted.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from dispatcher.config.settings import Settings
from dispatcher.local.dynamodb.tables import create_tables
from dispatcher.local.sandbox.window import RateWindow, rate_window
from dispatcher.model.message import Message
from dispatcher.pacing.account_limit import LimitTable, SharedBucket
from dispatcher.pacing.invocation_bucket import RequestSlots, TokenBucket
from dispatcher.pacing.retry import RetryPolicy, send_with_retries
from dispatcher.providers.base import Accepted
from dispatcher.providers.errors import RateLimitedError
from dispatcher.support.clock import Deadline
from tests.fakes import EventClock, SerializedClient

CONCURRENCY = Settings.send_concurrency
#: Up to this many seconds added to each way of a request: a busy machine's scheduling, enough
#: to put a 21st request into a window when requests are spaced at exactly R.
JITTER = 0.03
MESSAGE = Message(
    id="r1", to="a@example.com", subject="s", from_email="f@example.com", from_name="", text="t"
)


@dataclass
class WindowedProvider:
    """Counts each request in ``window`` halfway through its latency; answers 429 over it."""

    clock: EventClock
    window: RateWindow
    latency: float
    jitter: float
    says_window: bool = True  # blastengine's headers; SES says nothing of its window
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    name: str = "windowed"
    accepted: list[float] = field(default_factory=list)
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: Message, *, timeout: float) -> Accepted:
        with self._lock:
            there, back = (self.latency / 2 + self.rng.uniform(0, self.jitter) for _ in "ab")
        self.clock.sleep(there)
        with self._lock:
            now = self.clock.monotonic()
            taken = self.window.take(now)
            remaining, resets_in = self.window.state(now)
            if taken:
                self.accepted.append(now)
            else:
                self.refused += 1
        self.clock.sleep(back)
        if not taken:
            raise RateLimitedError("HTTP 429", retry_after=resets_in if self.says_window else 1.0)
        if not self.says_window:
            return Accepted("d")
        return Accepted("d", remaining=remaining, window_resets_in=resets_in)


def _send_all(
    provider: WindowedProvider, buckets: list[RequestSlots], clock: EventClock, mails: int
) -> None:
    """``mails`` mails, by ``CONCURRENCY`` threads per bucket (an invocation each)."""
    left = iter(range(mails))
    lock = threading.Lock()

    def worker(bucket: RequestSlots) -> None:
        try:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                send_with_retries(
                    provider,
                    MESSAGE,
                    bucket=bucket,
                    deadline=Deadline(clock, at=clock.monotonic() + 900),
                    clock=clock,
                    policy=RetryPolicy(max_attempts=5, rng=random.Random(1)),
                )
        finally:
            clock.leave()

    threads = [
        threading.Thread(target=worker, args=(bucket,))
        for bucket in buckets
        for _ in range(CONCURRENCY)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a sender never finished"


def _ratio(provider: WindowedProvider, rate: float) -> float:
    """The provider's view: accepted mails per second, from the first to the last, ÷ R."""
    first, last = provider.accepted[0], provider.accepted[-1]
    return (len(provider.accepted) - 1) / (last - first) / rate


@pytest.fixture
def limit_table() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, {"RateLimitTable": "limit"})
        yield SerializedClient(client)


SHAPES = [
    pytest.param("fixed", True, id="blastengine-fixed-window"),
    pytest.param("bucket", True, id="token-bucket"),
    pytest.param("fixed", False, id="ses-silent-window"),
]


@pytest.mark.parametrize(("shape", "says_window"), SHAPES)
@pytest.mark.parametrize("rate", [20.0, 50.0])
def test_one_invocation_reaches_the_limit_without_429s(
    shape: str, says_window: bool, rate: float
) -> None:
    # GIVEN a provider with a limit of R in that shape, 50 ms away, up to 30 ms of jitter each way
    clock = EventClock(threads=CONCURRENCY)
    provider = WindowedProvider(
        clock, rate_window(shape, rate), 0.05, JITTER, says_window=says_window
    )

    # WHEN one invocation sends 30 s worth of mail at R
    mails = int(30 * rate)
    _send_all(provider, [TokenBucket(rate=rate, clock=clock)], clock, mails)

    # THEN every mail was taken, at 0.95 of R or more, and fewer than 1% of requests met a 429
    assert len(provider.accepted) == mails
    assert _ratio(provider, rate) >= 0.95, f"{_ratio(provider, rate):.3f} of R"
    assert provider.refused < 0.01 * mails, f"{provider.refused} answers 429"


@pytest.mark.parametrize(("shape", "says_window"), SHAPES)
def test_four_shards_sharing_the_limit_reach_it_without_429s(
    limit_table: Any, shape: str, says_window: bool
) -> None:
    # GIVEN four invocations (shards) pacing through the account's one limit item, R = 20
    rate = 20.0
    clock = EventClock(threads=4 * CONCURRENCY)
    provider = WindowedProvider(
        clock, rate_window(shape, rate), 0.05, JITTER, says_window=says_window
    )
    buckets: list[RequestSlots] = [
        SharedBucket(
            table=LimitTable(limit_table, "limit", key="acct"), rate=rate, clock=clock, expected=150
        )
        for _ in range(4)
    ]

    # WHEN they send 30 s worth of mail between them
    mails = int(30 * rate)
    _send_all(provider, buckets, clock, mails)

    # THEN as one sender would: 0.95 of R or more, fewer than 1% of requests answered 429
    assert len(provider.accepted) == mails
    assert _ratio(provider, rate) >= 0.95, f"{_ratio(provider, rate):.3f} of R"
    assert provider.refused < 0.01 * mails, f"{provider.refused} answers 429"


class SharedAccountWindow:
    """A fixed window some other application of the account also spends: ``theirs``
    requests at the start of each second, before ours."""

    def __init__(self, rate: float, theirs: int) -> None:
        self._window = rate_window("fixed", rate)
        self._theirs = theirs
        self._second: int | None = None
        self.taken_by_them = 0

    def take(self, now: float) -> bool:
        if self._second != int(now):
            self._second = int(now)
            for _ in range(self._theirs):
                self.taken_by_them += self._window.take(now)
        return self._window.take(now)

    def state(self, now: float) -> tuple[int, float]:
        return self._window.state(now)


def test_a_window_another_sender_spends_holds_ours_before_a_429() -> None:
    # GIVEN an account of R = 20 another application also uses, 5 requests a second, which
    # the dispatcher's pacing does not know of (only the provider's answers say so)
    rate, clock = 20.0, EventClock(threads=CONCURRENCY)
    window = SharedAccountWindow(rate, theirs=5)
    provider = WindowedProvider(clock, window, 0.05, JITTER)

    # WHEN the dispatcher sends 30 s worth of mail at what it believes is R
    mails = int(30 * rate)
    _send_all(provider, [TokenBucket(rate=rate, clock=clock)], clock, mails)

    # THEN it reads the windows it shares and holds: fewer than 1% of requests answered 429
    assert len(provider.accepted) == mails
    assert provider.refused < 0.01 * mails, f"{provider.refused} answers 429"
