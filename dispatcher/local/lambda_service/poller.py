"""The stream's event source mapping, run locally with Lambda's semantics.

Lambda reads a DynamoDB stream shard by shard and, for each shard, invokes the function with
batches in order. This module does the same for the local stack, with the settings
``template.yaml`` gives the mapping
(:meth:`~dispatcher.local.lambda_service.mapping.MappingConfig.from_template`):

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dispatcher.local.dynamodb.stream import UnreadableRecords, lambda_record
from dispatcher.local.lambda_service.mapping import MappingConfig, OnFailure
from dispatcher.local.lambda_service.shard_consumer import Invoke, Record, ShardConsumer
from dispatcher.support.clock import SYSTEM_CLOCK, Clock
from dispatcher.support.observability import logger as _log

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

__all__ = ["StreamPoller"]


MAX_FAILED_POLLS = 20
#: How often the poller looks for new shards while none has closed (Lambda's mapping also
#: discovers shards on a period of its own, not before every read).
SHARD_DISCOVERY_SECONDS = 1.0


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
        #: When the stream was last described; None: describe it at the next read (at the
        #: start, and once a shard has closed: its children are there to find).
        self._described_at: float | None = None

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
        if self._shards_may_have_changed():
            self._described_at = self._clock.monotonic()
            description = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id not in self._lanes:
                    self._add_shard(shard_id, shard.get("ParentShardId"))
        for shard_id in list(self._lanes):
            if self._parent_done(shard_id):  # a child waits for its parent: order across a split
                moved |= self._read(shard_id)
        return moved

    def _shards_may_have_changed(self) -> bool:
        """Whether to describe the stream again: at the start, once a shard has closed (its
        children are there to find), and every :data:`SHARD_DISCOVERY_SECONDS` besides.
        Describing it before every read cost the local endpoint one request per poll."""
        if self._described_at is None:
            return True
        return self._clock.monotonic() - self._described_at >= SHARD_DISCOVERY_SECONDS

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
        if self._iterators[shard_id] == "":
            self._described_at = None  # closed: look for its children at the next read
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
