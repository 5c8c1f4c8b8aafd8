"""The account's one limit, shared through a DynamoDB item: grants, contention, pauses,
give-backs and the table failing."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from dispatcher.local.dynamodb.tables import create_tables
from dispatcher.pacing.account_limit import (
    FALLBACK_SECONDS,
    LimitTable,
    SharedBucket,
    ShareOfTheLimit,
)
from dispatcher.pacing.invocation_bucket import BucketTimeoutError
from dispatcher.support.clock import Deadline
from tests.fakes import EPOCH, FakeClock, SerializedClient

T0 = EPOCH.timestamp()


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, {"RateLimitTable": "limit"})
        yield dynamodb


def _next_slot(client: Any) -> float:
    item = client.get_item(TableName="limit", Key={"name": {"S": "acct"}})["Item"]
    return float(item["next_slot"]["N"])


def _starts(bucket: SharedBucket, clock: FakeClock, n: int) -> list[float]:
    out = []
    for _ in range(n):
        bucket.acquire()
        out.append(round(clock.now().timestamp() - T0, 4))
    return out


def test_two_invocations_share_one_limit_between_them(client: Any) -> None:
    # GIVEN two invocations of one account at 10/s, on one clock
    clock = FakeClock()
    table = LimitTable(client, "limit", key="acct")
    a = SharedBucket(table=table, rate=10, clock=clock)
    b = SharedBucket(table=table, rate=10, clock=clock)

    # WHEN each takes 3 slots, one after the other
    first, second = _starts(a, clock, 3), _starts(b, clock, 3)

    # THEN their requests are spaced 1/R apart across both: 6 slots in 0.6 s, not 0.3 s
    assert first == [0.0, 0.1, 0.2]
    assert second == [0.3, 0.4, 0.5]
    assert _next_slot(client) == pytest.approx(T0 + 0.6)


def test_a_grant_is_one_write_for_several_sends(client: Any) -> None:
    # GIVEN an account at 100/s and an invocation expecting 20 sends
    clock = FakeClock()
    bucket = SharedBucket(
        table=LimitTable(client, "limit", key="acct"), rate=100, clock=clock, expected=20
    )
    # WHEN it takes 20 slots
    for _ in range(20):
        bucket.acquire()
    # THEN the grants were a fraction of the sends: 25 slots at most each (0.25 s of limit)
    assert bucket.leases <= 2
    assert clock.now().timestamp() - T0 == pytest.approx(0.19)


def test_unused_slots_are_given_back_when_nobody_leased_after(client: Any) -> None:
    clock = FakeClock()
    table = LimitTable(client, "limit", key="acct")
    bucket = SharedBucket(table=table, rate=10, clock=clock, expected=5)  # a grant of 5
    bucket.acquire()
    assert _next_slot(client) == pytest.approx(T0 + 0.5)

    bucket.release()

    assert _next_slot(client) == pytest.approx(T0 + 0.1)


def test_a_pause_holds_every_invocation_of_the_account(client: Any) -> None:
    # GIVEN a 429 in one invocation said "come back in 2 s"
    clock = FakeClock()
    table = LimitTable(client, "limit", key="acct")
    a = SharedBucket(table=table, rate=10, clock=clock)
    b = SharedBucket(table=table, rate=10, clock=clock)
    a.acquire()
    a.pause(2.0)

    # WHEN the other invocation asks for a slot
    b.acquire()

    # THEN it starts after the pause too
    assert clock.now().timestamp() - T0 == pytest.approx(2.0)


def test_no_slot_is_taken_past_the_deadline(client: Any) -> None:
    clock = FakeClock()
    table = LimitTable(client, "limit", key="acct")
    table.push(T0 + 60)  # another invocation holds the next minute
    bucket = SharedBucket(table=table, rate=10, clock=clock)

    with pytest.raises(BucketTimeoutError):
        bucket.acquire(Deadline(clock, clock.monotonic() + 5), reserve=1)

    assert _next_slot(client) == pytest.approx(T0 + 60)  # nothing leased


def test_a_failing_limit_table_falls_back_to_pacing_alone(client: Any) -> None:
    # GIVEN the limit table throttles every call
    def throttle(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
            "UpdateItem",
        )

    client.meta.events.register("before-call.dynamodb.UpdateItem", throttle)
    clock = FakeClock()
    bucket = SharedBucket(table=LimitTable(client, "limit", key="acct"), rate=10, clock=clock)

    # WHEN sends ask for slots
    starts = _starts(bucket, clock, 3)

    # THEN they are still paced at R, by the invocation alone, and nothing raised
    assert starts == [0.0, 0.1, 0.2]
    assert bucket.leases == 0
    assert FALLBACK_SECONDS > 0.2


def test_concurrent_leases_never_overlap(client: Any) -> None:
    # GIVEN eight invocations leasing at once from one item (real threads; moto's backend
    # is not thread-safe, so its calls are serialised, as DynamoDB isolates them)
    table = LimitTable(SerializedClient(client), "limit", key="acct")
    grants: list[tuple[float, float]] = []
    lock = threading.Lock()

    def lease() -> None:
        for _ in range(5):
            first = table.lease(3, 0.01, T0, T0 + 3600)
            assert first is not None
            with lock:
                grants.append((first, first + 0.03))

    threads = [threading.Thread(target=lease) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # THEN the 40 grants tile the time line without overlap
    grants.sort()
    assert len(grants) == 40
    for (_, end), (start, _) in itertools.pairwise(grants):
        assert start >= end - 1e-6


def test_a_share_of_the_limit_takes_one_slot_a_request_and_no_more_than_its_share(
    client: Any,
) -> None:
    # GIVEN the mail log's 5% share of an account of 10/s, and an invocation sending with it
    clock = FakeClock()
    log = ShareOfTheLimit(
        SharedBucket(table=LimitTable(client, "limit", key="acct"), rate=10, clock=clock),
        share=0.05,
        clock=clock,
    )
    sends = SharedBucket(table=LimitTable(client, "limit", key="acct"), rate=10, clock=clock)

    # WHEN the log asks once, then the invocation sends twice, then the log asks again
    log.acquire()
    sent = _starts(sends, clock, 2)
    log.acquire()
    again = round(clock.now().timestamp() - T0, 4)

    # THEN the log's request cost the senders one slot (0.1 s), not 1/(5% of R) = 2 s
    assert sent == [0.1, 0.2]
    # and its own next request waited for its share: 2 s after its first
    assert again == pytest.approx(2.0)
