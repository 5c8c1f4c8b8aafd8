"""The stream's event source mapping, run locally with Lambda's semantics.

Lambda reads a DynamoDB stream shard by shard and, for each shard, invokes the function with
batches in order. This module does the same for the local stack, with the settings
``template.yaml`` gives the mapping (:meth:`MappingConfig.from_template`):

- **batching**: up to ``BatchSize`` records, waiting up to ``MaximumBatchingWindowInSeconds``
  for a batch to fill;
- **filtering**: records that do not match ``FilterCriteria`` are never delivered (and count
  as processed);
- **partial batch responses**: the shard is checkpointed just before the lowest failed
  sequence number and delivery resumes from that record;
- **function errors** (an exception, or a response naming records not in the batch):
  with ``BisectBatchOnFunctionError`` the batch is halved and retried (a split does not
  count as a retry); otherwise the same batch is retried;
- **bounded retries**: after ``MaximumRetryAttempts`` retries, or once a record is older than
  ``MaximumRecordAgeInSeconds``, the records are handed to the on-failure destination (a
  record shaped like Lambda's, written as a JSON line) and the shard moves on;
- **shards**: every shard is read; a child shard (after a split) only once its parent is
  closed and fully processed;
- **parallelization**: with ``ParallelizationFactor`` F, each shard's records are spread over
  F batchers by a hash of the partition key, each delivering its own batches in order and all
  of them at once (so per-row-id order holds, as Lambda keeps it), each invocation in an
  execution environment of its own (:class:`StreamPoller.run` gives every batcher a thread).

The local endpoint's tables have one shard; ``shards`` N fans it out into N, the same way (by
partition key), so that the account's shared limit meets N concurrent invocations as it does
on a table with N partitions.

No record is lost or skipped: a record leaves a shard's queue only when the function
succeeded with it, the filter dropped it, or it went to the on-failure destination.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher.clock import SYSTEM_CLOCK, Clock
from dispatcher.local.stream import UnreadableRecords, lambda_record
from dispatcher.observability import logger as _log

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

__all__ = [
    "FileFailureDestination",
    "MappingConfig",
    "ShardConsumer",
    "StreamPoller",
    "matches_filter",
]

Record = dict[str, Any]
Invoke = Callable[[dict[str, Any]], Any]
OnFailure = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class MappingConfig:
    """The event source mapping's settings; the defaults are AWS's."""

    batch_size: int = 100
    batching_window: float = 0.0
    maximum_retry_attempts: int = -1  # -1: forever
    maximum_record_age: float = -1  # seconds; -1: forever
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False
    filters: tuple[Mapping[str, Any], ...] = ()
    parallelization_factor: int = 1

    @classmethod
    def from_template(
        cls,
        template: Mapping[str, Any] | None = None,
        *,
        function: str = "DispatcherFunction",
        event: str = "SendTableStream",
    ) -> MappingConfig:
        """The mapping ``template.yaml`` configures, parameters at their defaults."""
        from dispatcher.local.tables import load_template

        document = template if template is not None else load_template()
        props = document["Resources"][function]["Properties"]["Events"][event]["Properties"]
        params = document.get("Parameters", {})

        def value(name: str, default: Any) -> Any:
            raw = props.get(name, default)
            if isinstance(raw, dict) and "Ref" in raw:
                raw = params[raw["Ref"]].get("Default", default)
            return raw

        filters = tuple(
            json.loads(f["Pattern"]) for f in (props.get("FilterCriteria") or {}).get("Filters", [])
        )
        return cls(
            batch_size=int(value("BatchSize", 100)),
            batching_window=float(value("MaximumBatchingWindowInSeconds", 0)),
            maximum_retry_attempts=int(value("MaximumRetryAttempts", -1)),
            maximum_record_age=float(value("MaximumRecordAgeInSeconds", -1)),
            bisect_on_error=str(value("BisectBatchOnFunctionError", "false")).lower() == "true",
            report_batch_item_failures="ReportBatchItemFailures"
            in (props.get("FunctionResponseTypes") or []),
            filters=filters,
            parallelization_factor=int(value("ParallelizationFactor", 1)),
        )


def matches_filter(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Lambda's event filtering for the forms a template uses here: exact values, nested keys.

    A list of values matches when the record's value equals any of them; a nested object
    matches the record's nested object. Content-filter operators (``prefix``,
    ``anything-but``, ...) are not supported and raise, rather than silently pass.
    """
    for key, expected in pattern.items():
        actual = record.get(key) if isinstance(record, Mapping) else None
        if isinstance(expected, Mapping):
            if not isinstance(actual, Mapping) or not matches_filter(expected, actual):
                return False
        elif isinstance(expected, list):
            if any(isinstance(option, Mapping) for option in expected):
                raise ValueError(f"unsupported filter operator in {expected!r}")
            if actual not in expected:
                return False
        else:
            raise ValueError(f"filter values must be lists or objects, got {expected!r}")
    return True


class FileFailureDestination:
    """The on-failure destination: one JSON line per failed batch, like Lambda's SQS message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(message) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


@dataclass
class _RetryState:
    head: str | None = None  # sequence number of the record the failures were counted for
    attempts: int = 0


@dataclass
class ShardConsumer:
    """One shard's queue of records, delivered in order with the mapping's semantics."""

    shard_id: str
    stream_arn: str
    config: MappingConfig
    invoke: Invoke
    on_failure: OnFailure
    clock: Clock = SYSTEM_CLOCK
    pending: deque[tuple[float, Record]] = field(default_factory=deque)  # (read at, record)
    _limit: int = 0
    _retry: _RetryState = field(default_factory=_RetryState)
    # The reader adds while this consumer's batcher delivers: ``pending`` is shared.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._limit = self.config.batch_size

    def add(self, records: Sequence[Record]) -> None:
        """Queue records read from the shard, dropping those the filter does not match."""
        now = self.clock.monotonic()
        filters = self.config.filters
        kept = [
            (now, record)
            for record in records
            if not filters or any(matches_filter(p, record) for p in filters)
        ]
        with self._lock:
            self.pending.extend(kept)
        if kept:
            self._arrived.set()

    def wait_until_due(self, longest: float) -> None:
        """Sleep until a batch may be due: records arrive, or the oldest one's batching
        window ends; at most ``longest`` seconds."""
        with self._lock:
            head = self.pending[0][0] if self.pending else None
            self._arrived.clear()
        if head is None:
            self._arrived.wait(longest)
            return
        due_in = head + self.config.batching_window - self.clock.monotonic()
        if due_in > 0:
            self._arrived.wait(min(longest, due_in))

    def ready(self) -> bool:
        """A batch is due: full, or its oldest record has waited the batching window."""
        with self._lock:
            if not self.pending:
                return False
            if len(self.pending) >= self.config.batch_size:
                return True
            return self.clock.monotonic() - self.pending[0][0] >= self.config.batching_window

    def run_once(self) -> bool:
        """Deliver one batch if one is due; returns whether the function was invoked.
        One caller at a time (the consumer's batcher): batches of a consumer are in order."""
        self._expire_old_records()
        if not self.ready():
            return False
        with self._lock:
            size = min(self.config.batch_size, self._limit, len(self.pending))
            batch = [record for _, record in islice(self.pending, size)]
        try:
            response = self.invoke({"Records": batch})
            failed = self._failed_index(response, batch)
        except Exception as exc:  # any function error is the mapping's to handle
            _log.warning(
                "function error; the batch will be retried",
                extra={"shard": self.shard_id, "batch_size": len(batch), "error": repr(exc)},
            )
            self._function_error(batch)
            return True
        if failed is None:
            self._checkpoint(len(batch))
            return True
        self._checkpoint(failed)  # everything before the lowest failed record is done
        self._count_failure(batch[failed:])
        return True

    def _failed_index(self, response: Any, batch: list[Record]) -> int | None:
        """Index of the lowest failed record, None for full success; raises if malformed."""
        if not self.config.report_batch_item_failures:
            return None
        failures = (response or {}).get("batchItemFailures") if isinstance(response, dict) else []
        if not failures:
            return None
        positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in positions:
                # Lambda treats a response naming an unknown record as a failed invocation.
                raise ValueError(f"batchItemFailures names an unknown record {identifier!r}")
            indexes.append(positions[identifier])
        return min(indexes)

    def _function_error(self, batch: list[Record]) -> None:
        if self.config.bisect_on_error and len(batch) > 1:
            self._limit = max(1, len(batch) // 2)  # a split is not a retry
            return
        self._count_failure(batch)

    def _count_failure(self, remaining: list[Record]) -> None:
        head = remaining[0]["dynamodb"]["SequenceNumber"]
        if self._retry.head != head:
            self._retry = _RetryState(head=head)
        self._retry.attempts += 1
        limit = self.config.maximum_retry_attempts
        if limit >= 0 and self._retry.attempts > limit:
            self._give_up(remaining, "RetryAttemptsExhausted", self._retry.attempts)

    def _expire_old_records(self) -> None:
        if self.config.maximum_record_age < 0:
            return
        now = self.clock.now().timestamp()
        expired = []
        with self._lock:
            for _, record in self.pending:
                created = record["dynamodb"].get("ApproximateCreationDateTime", now)
                if now - float(created) <= self.config.maximum_record_age:
                    break
                expired.append(record)
        if expired:
            self._give_up(expired, "RecordAgeExceeded", self._retry.attempts)

    def _give_up(self, records: list[Record], condition: str, invoke_count: int) -> None:
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        self.on_failure(
            {
                "requestContext": {
                    "condition": condition,
                    "approximateInvokeCount": invoke_count,
                    "functionArn": "arn:aws:lambda:local:000000000000:function:DispatcherFunction",
                },
                "timestamp": datetime.now(UTC).isoformat(),
                "DDBStreamBatchInfo": {
                    "shardId": self.shard_id,
                    "startSequenceNumber": first["SequenceNumber"],
                    "endSequenceNumber": last["SequenceNumber"],
                    "approximateArrivalOfFirstRecord": first.get("ApproximateCreationDateTime"),
                    "approximateArrivalOfLastRecord": last.get("ApproximateCreationDateTime"),
                    "batchSize": len(records),
                    "streamArn": self.stream_arn,
                },
                # Not in Lambda's message (it carries positions only); kept here so a local run
                # can say which rows to look at without re-reading the stream.
                "keys": [r["dynamodb"].get("Keys") for r in records],
            }
        )
        self._checkpoint(len(records))

    def _checkpoint(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self.pending.popleft()
            head = self.pending[0][1]["dynamodb"]["SequenceNumber"] if self.pending else None
        if count:
            self._limit = self.config.batch_size
            if head != self._retry.head:
                self._retry = _RetryState()


#: Polls that may fail in a row before the poller gives up (about a minute of retries).
MAX_FAILED_POLLS = 20


class StreamPoller:
    """Reads every shard of a stream and feeds each shard's :class:`ShardConsumer` (one per
    virtual shard and parallel batcher)."""

    def __init__(
        self,
        client: DynamoDBStreamsClient,
        stream_arn: str,
        config: MappingConfig,
        invoke: Invoke,
        on_failure: OnFailure,
        *,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval: float = 0.1,
        shards: int = 1,
    ) -> None:
        if shards < 1 or config.parallelization_factor < 1:
            raise ValueError("shards and the parallelization factor must be at least 1")
        self._client = client
        self._arn = stream_arn
        self._config = config
        self._invoke = invoke
        self._on_failure = on_failure
        self._clock = clock
        self._interval = poll_interval
        self._fan_out = shards * config.parallelization_factor
        self._iterators: dict[str, str | None] = {}
        self._parents: dict[str, str | None] = {}
        self._lanes: dict[str, list[ShardConsumer]] = {}  # a stream shard's consumers
        self.consumers: dict[str, ShardConsumer] = {}
        self._unreadable = UnreadableRecords()
        self._unreadable.install(client)

    def poll_once(self) -> bool:
        """Read what is new and deliver every batch that is due, one after the other; True if
        anything moved. (:meth:`run` delivers concurrently instead.)"""
        moved = self.read_once()
        for consumer in self.consumers.values():
            while consumer.run_once():
                moved = True
        return moved

    def read_once(self) -> bool:
        """Read what is new from every shard whose parent is done; True if anything was."""
        moved = False
        for shard in self._client.describe_stream(StreamArn=self._arn)["StreamDescription"].get(
            "Shards", []
        ):
            shard_id = shard["ShardId"]
            if shard_id not in self._lanes:
                self._add_shard(shard_id, shard.get("ParentShardId"))
        for shard_id in list(self._lanes):
            if self._parent_done(shard_id):  # a child waits for its parent: order across a split
                moved |= self._read(shard_id)
        return moved

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set, each consumer delivering on a thread of its own (its
        own execution environment), as Lambda runs a shard's batchers at once. A poll that
        fails (the endpoint restarting, a read refused) is logged and retried with a growing
        pause, as Lambda's mapping retries; only :data:`MAX_FAILED_POLLS` failures in a row
        end the run, with the last error. A batcher that dies ends it too."""
        batchers: dict[str, threading.Thread] = {}
        died: list[BaseException] = []
        failures = 0
        try:
            while not stop.is_set():
                if died:
                    raise died[0]
                try:
                    moved = self.read_once()
                except Exception:
                    failures += 1
                    if failures >= MAX_FAILED_POLLS:
                        raise
                    _log.exception(
                        "reading the stream failed; retrying", extra={"failures": failures}
                    )
                    stop.wait(min(5.0, self._interval * 2**failures))
                    continue
                failures = 0
                for name, consumer in self.consumers.items():
                    if name not in batchers:
                        batchers[name] = threading.Thread(
                            target=self._deliver_forever,
                            args=(consumer, stop, died),
                            name=f"batcher {name}",
                            daemon=True,
                        )
                        batchers[name].start()
                if not moved:
                    stop.wait(self._interval)
        finally:
            stop.set()
            for thread in batchers.values():
                thread.join(timeout=60)

    def _deliver_forever(
        self, consumer: ShardConsumer, stop: threading.Event, died: list[BaseException]
    ) -> None:
        try:
            while not stop.is_set():
                if not consumer.run_once():
                    consumer.wait_until_due(self._interval)
        except BaseException as exc:
            died.append(exc)

    def idle(self) -> bool:
        """Nothing read and not yet delivered."""
        return all(not c.pending for c in self.consumers.values())

    def _add_shard(self, shard_id: str, parent: str | None) -> None:
        lanes = []
        for lane in range(self._fan_out):
            name = shard_id if self._fan_out == 1 else f"{shard_id}#{lane}"
            consumer = ShardConsumer(
                name, self._arn, self._config, self._invoke, self._on_failure, clock=self._clock
            )
            self.consumers[name] = consumer
            lanes.append(consumer)
        self._lanes[shard_id] = lanes
        self._parents[shard_id] = parent
        self._iterators[shard_id] = None

    def _parent_done(self, shard_id: str) -> bool:
        parent = self._parents.get(shard_id)
        if parent is None or parent not in self._lanes:
            return True
        return self._iterators.get(parent) == "" and not any(c.pending for c in self._lanes[parent])

    def _read(self, shard_id: str) -> bool:
        iterator = self._iterators[shard_id]
        if iterator == "":  # closed and fully read
            return False
        if iterator is None:
            iterator = self._client.get_shard_iterator(
                StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        page = self._client.get_records(ShardIterator=iterator, Limit=1000)
        for bad in self._unreadable.take():
            self._report_unreadable(shard_id, bad)
        records = [lambda_record(dict(r), self._arn) for r in page.get("Records", [])]
        # A closed shard returns no next iterator once it is fully read.
        self._iterators[shard_id] = page.get("NextShardIterator") or ""
        lanes = self._lanes[shard_id]
        if len(lanes) == 1:
            lanes[0].add(records)
        else:
            spread: list[list[Record]] = [[] for _ in lanes]
            for record in records:
                spread[_partition(record, len(lanes))].append(record)
            for consumer, share in zip(lanes, spread, strict=True):
                consumer.add(share)
        return bool(records)

    def _report_unreadable(self, shard_id: str, record: Any) -> None:
        """A record no consumer could parse: named in the log and the on-failure destination,
        then skipped, as Lambda's mapping goes on past a record it cannot deliver."""
        stream = record.get("dynamodb", {}) if isinstance(record, dict) else {}
        sequence = stream.get("SequenceNumber") if isinstance(stream, dict) else None
        _log.error(
            "unreadable stream record skipped",
            extra={"shard_id": shard_id, "sequence_number": sequence},
        )
        self._on_failure(
            {
                "requestContext": {"condition": "UnreadableRecord", "approximateInvokeCount": 0},
                "timestamp": datetime.now(UTC).isoformat(),
                "DDBStreamBatchInfo": {
                    "shardId": shard_id,
                    "startSequenceNumber": sequence,
                    "endSequenceNumber": sequence,
                    "batchSize": 1,
                    "streamArn": self._arn,
                },
                "keys": [stream.get("Keys")] if isinstance(stream, dict) else [],
            }
        )


def _partition(record: Record, lanes: int) -> int:
    """Which lane a record's partition key hashes to: the same key, always the same lane."""
    keys = json.dumps(record.get("dynamodb", {}).get("Keys"), sort_keys=True)
    return zlib.crc32(keys.encode()) % lanes
