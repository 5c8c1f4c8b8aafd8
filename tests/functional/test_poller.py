"""The local event source mapping's semantics, against a fake stream and a fake function."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from dispatcher.local.lambda_service.mapping import MappingConfig, matches_filter
from dispatcher.local.lambda_service.poller import StreamPoller
from dispatcher.local.lambda_service.shard_consumer import ShardConsumer
from tests.fakes import FakeClock

T0 = 1764000000  # ApproximateCreationDateTime of the fake records (the FakeClock's start)


def rec(n: int, event: str = "INSERT", created: int = T0) -> dict[str, Any]:
    return {
        "eventName": event,
        "eventID": f"e{n}",
        "dynamodb": {
            "SequenceNumber": str(1000 + n),
            "Keys": {"id": {"S": f"r{n}"}},
            "ApproximateCreationDateTime": created,
        },
    }


def seq(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["dynamodb"]["SequenceNumber"]) - 1000 for r in records]


class Function:
    """Records each batch it gets and answers from ``behaviour(batch)``."""

    def __init__(self, behaviour: Callable[[list], Any] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.behaviour = behaviour or (lambda batch: {"batchItemFailures": []})

    def __call__(self, event: dict[str, Any]) -> Any:
        self.batches.append(seq(event["Records"]))
        return self.behaviour(event["Records"])


def fail(*numbers: int) -> Callable[[list], Any]:
    def behaviour(batch: list) -> Any:
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
                for r in batch
                if seq([r])[0] in numbers
            ]
        }

    return behaviour


def consumer(
    function: Function, failures: list, clock: FakeClock | None = None, **config: Any
) -> ShardConsumer:
    settings = {"batch_size": 4, "report_batch_item_failures": True, **config}
    return ShardConsumer(
        "shard-1",
        "arn:stream",
        MappingConfig(**settings),
        function,
        failures.append,
        clock=clock or FakeClock(_epoch()),
    )


def _epoch():
    from datetime import UTC, datetime

    return datetime.fromtimestamp(T0, UTC)


def drain(c: ShardConsumer, limit: int = 200) -> None:
    for _ in range(limit):
        if not c.run_once():
            return
    raise AssertionError("did not settle")


def test_records_are_delivered_in_order_in_batches_of_batch_size() -> None:
    function, failures = Function(), []
    c = consumer(function, failures)
    c.add([rec(n) for n in range(10)])

    drain(c)

    assert function.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert failures == []


def test_a_partial_batch_waits_for_the_batching_window() -> None:
    clock = FakeClock(_epoch())
    function, failures = Function(), []
    c = consumer(function, failures, clock=clock, batching_window=1.0)
    c.add([rec(0), rec(1)])

    assert c.run_once() is False
    clock.advance(1.0)
    assert c.run_once() is True
    assert function.batches == [[0, 1]]


def test_the_filter_drops_records_before_the_function_sees_them() -> None:
    function, failures = Function(), []
    c = consumer(function, failures, filters=({"eventName": ["INSERT", "MODIFY"]},))
    c.add([rec(0), rec(1, "REMOVE"), rec(2, "MODIFY")])

    drain(c)

    assert function.batches == [[0, 2]]


def test_a_partial_failure_checkpoints_before_the_lowest_failed_record() -> None:
    # GIVEN the function fails record 2 (and 3) once
    answers = [fail(2, 3)]
    function, failures = Function(lambda b: answers.pop(0)(b) if answers else {}), []
    c = consumer(function, failures)
    c.add([rec(n) for n in range(6)])

    drain(c)

    # THEN delivery resumes from record 2; 0 and 1 are never redelivered
    assert function.batches == [[0, 1, 2, 3], [2, 3, 4, 5]]
    assert failures == []


def test_retries_are_bounded_and_the_rest_goes_to_the_on_failure_destination() -> None:
    # GIVEN record 1 always fails, with 2 retries allowed
    function, failures = Function(fail(1)), []
    c = consumer(function, failures, maximum_retry_attempts=2)
    c.add([rec(n) for n in range(6)])

    drain(c)

    # THEN it is tried 1 + 2 times, then records 1.. of that batch go to the destination
    assert function.batches[:3] == [[0, 1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]]
    [message] = failures
    info = message["DDBStreamBatchInfo"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == ("1001", "1004")
    assert info["batchSize"] == 4
    # and the shard moves on
    assert function.batches[-1] == [5]


def test_a_function_error_with_bisect_isolates_the_poison_record() -> None:
    # GIVEN the function crashes on any batch containing record 5
    def crash(batch: list) -> Any:
        if 5 in seq(batch):
            raise RuntimeError("boom")
        return {}

    function, failures = Function(crash), []
    c = consumer(function, failures, batch_size=8, bisect_on_error=True, maximum_retry_attempts=1)
    c.add([rec(n) for n in range(8)])

    drain(c)

    # THEN every other record is delivered, and only record 5 ends in the destination
    delivered = {n for batch in function.batches if 5 not in batch for n in batch}
    assert delivered == {0, 1, 2, 3, 4, 6, 7}
    [message] = failures
    assert message["DDBStreamBatchInfo"]["startSequenceNumber"] == "1005"
    assert message["DDBStreamBatchInfo"]["batchSize"] == 1


def test_without_bisect_a_function_error_retries_the_whole_batch() -> None:
    function, failures = Function(lambda b: (_ for _ in ()).throw(RuntimeError("x"))), []
    c = consumer(function, failures, maximum_retry_attempts=1)
    c.add([rec(n) for n in range(3)])

    drain(c)

    assert function.batches == [[0, 1, 2], [0, 1, 2]]
    assert failures[0]["DDBStreamBatchInfo"]["batchSize"] == 3


def test_a_response_naming_an_unknown_record_is_a_function_error() -> None:
    answers = [{"batchItemFailures": [{"itemIdentifier": "nope"}]}]
    function, failures = Function(lambda b: answers.pop(0) if answers else {}), []
    c = consumer(function, failures)
    c.add([rec(0), rec(1)])

    drain(c)

    assert function.batches == [[0, 1], [0, 1]]


def test_records_older_than_the_maximum_age_go_to_the_destination() -> None:
    clock = FakeClock(_epoch())
    function, failures = Function(), []
    c = consumer(function, failures, clock=clock, maximum_record_age=60)
    c.add([rec(0, created=T0 - 120), rec(1, created=T0 - 10)])

    drain(c)

    assert function.batches == [[1]]
    assert failures[0]["requestContext"]["condition"] == "RecordAgeExceeded"


@pytest.mark.parametrize("seed", range(20))
def test_no_record_is_ever_lost_or_skipped(seed: int) -> None:
    # GIVEN a function that randomly crashes or fails some records
    rng = random.Random(seed)
    done: list[int] = []

    def flaky(batch: list) -> Any:
        roll = rng.random()
        if roll < 0.2:
            raise RuntimeError("crash")
        failed = [r for r in batch if rng.random() < 0.15]
        first = min((seq([r])[0] for r in failed), default=None)
        done.extend(n for n in seq(batch) if first is None or n < first)
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in failed
            ]
        }

    function, failures = Function(flaky), []
    c = consumer(
        function, failures, batch_size=7, bisect_on_error=bool(seed % 2), maximum_retry_attempts=3
    )
    c.add([rec(n) for n in range(60)])

    drain(c, limit=2000)

    # THEN each record was either completed in order, or handed to the destination
    given_up = {
        n
        for m in failures
        for n in range(
            int(m["DDBStreamBatchInfo"]["startSequenceNumber"]) - 1000,
            int(m["DDBStreamBatchInfo"]["endSequenceNumber"]) - 1000 + 1,
        )
    }
    assert set(done) | given_up == set(range(60))
    assert done == sorted(done)  # completion order is stream order
    assert not c.pending


def test_the_mapping_is_read_from_the_template() -> None:
    config = MappingConfig.from_template()
    assert config.batch_size == 100
    assert config.batching_window == 1.0
    assert config.maximum_retry_attempts == 5
    assert config.maximum_record_age == 21600
    assert config.bisect_on_error is True
    assert config.report_batch_item_failures is True
    assert config.filters == ({"eventName": ["INSERT", "MODIFY"]},)


def test_filter_operators_it_does_not_know_are_refused() -> None:
    assert matches_filter(
        {"dynamodb": {"Keys": {"id": {"S": ["a"]}}}}, {"dynamodb": {"Keys": {"id": {"S": "a"}}}}
    )
    with pytest.raises(ValueError, match="unsupported"):
        matches_filter({"eventName": [{"prefix": "IN"}]}, {"eventName": "INSERT"})


class FakeStreams:
    """A DynamoDB Streams client over in-memory shards."""

    def __init__(self, shards: dict[str, dict[str, Any]]) -> None:
        self.shards = shards  # id -> {"parent": id|None, "records": [...], "closed": bool}

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {
            "StreamDescription": {
                "Shards": [
                    {"ShardId": k, **({"ParentShardId": v["parent"]} if v["parent"] else {})}
                    for k, v in self.shards.items()
                ]
            }
        }

    def get_shard_iterator(self, StreamArn: str, ShardId: str, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": f"{ShardId}:0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard_id, offset = ShardIterator.rsplit(":", 1)
        shard = self.shards[shard_id]
        records = shard["records"][int(offset) :]
        end = int(offset) + len(records)
        closed_and_read = shard["closed"]
        return {
            "Records": records,
            "NextShardIterator": None if closed_and_read else f"{shard_id}:{end}",
        }


def test_a_child_shard_is_read_only_after_its_parent() -> None:
    streams = FakeStreams(
        {
            "child": {"parent": "parent", "records": [rec(10), rec(11)], "closed": False},
            "parent": {"parent": None, "records": [rec(0), rec(1)], "closed": True},
        }
    )
    function, failures = Function(), []
    poller = StreamPoller(
        streams,
        "arn:stream",
        MappingConfig(batch_size=10),
        function,
        failures.append,
        clock=FakeClock(_epoch()),
    )

    for _ in range(4):
        poller.poll_once()

    assert function.batches == [[0, 1], [10, 11]]


class _FlakyStreams(FakeStreams):
    """Fails the first ``failures`` reads, as an endpoint restarting would."""

    def __init__(self, shards: dict[str, dict[str, Any]], failures: int) -> None:
        super().__init__(shards)
        self.failures = failures

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("endpoint restarting")
        return super().get_records(ShardIterator, Limit)


def test_a_failed_read_is_retried_and_the_poller_goes_on() -> None:
    streams = _FlakyStreams({"s": {"parent": None, "records": [rec(0)], "closed": False}}, 3)
    function = Function()
    poller = StreamPoller(
        streams,
        "arn:stream",
        MappingConfig(batch_size=10),
        function,
        [].append,
        poll_interval=0.001,
    )
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while not function.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5)

    assert function.batches == [[0]]
    assert streams.failures == 0


def test_a_poller_that_cannot_read_at_all_gives_up_with_the_error(monkeypatch) -> None:
    import dispatcher.local.lambda_service.poller as poller_module

    monkeypatch.setattr(poller_module, "MAX_FAILED_POLLS", 3)
    streams = _FlakyStreams({"s": {"parent": None, "records": [], "closed": False}}, 99)
    poller = StreamPoller(
        streams, "arn:stream", MappingConfig(), Function(), [].append, poll_interval=0.001
    )

    with pytest.raises(ConnectionError, match="restarting"):
        poller.run(threading.Event())


class _CountedStreams(FakeStreams):
    def __init__(self, shards: dict[str, dict[str, Any]]) -> None:
        super().__init__(shards)
        self.described = 0

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        self.described += 1
        return super().describe_stream(StreamArn)


def test_shards_are_looked_for_each_second_and_when_one_closes_not_before_every_read() -> None:
    from dispatcher.local.lambda_service.poller import SHARD_DISCOVERY_SECONDS

    streams = _CountedStreams({"s": {"parent": None, "records": [rec(0)], "closed": False}})
    clock = FakeClock(_epoch())
    function = Function()
    poller = StreamPoller(
        streams, "arn:stream", MappingConfig(batch_size=10), function, [].append, clock=clock
    )

    # WHEN it polls five times within a second: one description
    for _ in range(5):
        poller.poll_once()
    assert streams.described == 1

    # and once the period has passed: another
    clock.advance(SHARD_DISCOVERY_SECONDS)
    poller.poll_once()
    assert streams.described == 2

    # WHEN the shard closes and a child appears, within the second
    streams.shards["s"]["closed"] = True
    streams.shards["child"] = {"parent": "s", "records": [rec(1)], "closed": False}
    for _ in range(3):
        poller.poll_once()

    # THEN the child is found at once and read after its parent
    assert streams.described == 3
    assert function.batches == [[0], [1]]
