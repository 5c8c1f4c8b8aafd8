"""One shard's records delivered in order with the mapping's semantics: batches, partial
failures, bisect, bounded retries, the on-failure destination (see :mod:`.poller`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from dispatcher.local.lambda_service.mapping import MappingConfig, OnFailure, matches_filter
from dispatcher.support.clock import SYSTEM_CLOCK, Clock
from dispatcher.support.observability import logger as _log

__all__ = ["Invoke", "Record", "ShardConsumer"]

Record = dict[str, Any]
Invoke = Callable[[dict[str, Any]], Any]


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
