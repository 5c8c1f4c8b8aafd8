"""The primary provider's circuit: after several failures across the deployment, skip it.

Failing over row by row costs each row the primary's requests first (``FAILOVER_AFTER_
ATTEMPTS`` of them, and their timeouts) for as long as the primary is down. Once
``FAILOVER_THRESHOLD`` sends failed on it within ``FAILOVER_WINDOW_SECONDS``, anywhere in the
deployment, the circuit opens: every invocation sends straight through the failover provider
for ``FAILOVER_COOLDOWN_SECONDS``, then tries the primary again (the first sends after the
cool-down are the probe; if they fail, the count opens it again).

The state is one item in the rate-limit table (``name`` = ``circuit#<provider>``), so every
shard agrees: ``window_start`` and ``failures`` count the failures of the current window,
``open_until`` is when the cool-down ends. Only failures write; an invocation reads the item
at most once every :data:`READ_EVERY_SECONDS`. If the table cannot be reached, the circuit
counts as closed: each row then fails over on its own, which is slower but never wrong.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.storage.dynamodb import seconds_value
from dispatcher.support.clock import Clock
from dispatcher.support.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["READ_EVERY_SECONDS", "Circuit"]

#: How stale an invocation's view of the circuit may be.
READ_EVERY_SECONDS = 5.0


class Circuit:
    """The circuit of one provider; thread-safe, one per container."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        provider: str,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        clock: Clock,
    ) -> None:
        self._client = client
        self._table = table
        self._key = {"name": {"S": f"circuit#{provider}"}}
        self.provider = provider
        self._threshold = threshold
        self._window = window_seconds
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = float("-inf")
        self._read_at = float("-inf")

    def is_open(self) -> bool:
        """True while the primary is to be skipped."""
        now = self._now()
        with self._lock:
            stale = now - self._read_at >= READ_EVERY_SECONDS
            if stale:
                self._read_at = now
        if stale:
            try:
                item = self._client.get_item(
                    TableName=self._table, Key=self._key, ProjectionExpression="open_until"
                ).get("Item", {})
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "the circuit could not be read; trying the primary",
                    extra={"provider": self.provider, "error": f"{type(exc).__name__}: {exc}"},
                )
                item = {}
            until = float(item.get("open_until", {}).get("N", "-inf"))
            with self._lock:
                self._open_until = until
        with self._lock:
            return now < self._open_until

    def failed(self) -> bool:
        """Count one failure that proved the mail was not taken; True if it opened the
        circuit."""
        now = self._now()
        try:
            failures = self._count(now)
            if failures < self._threshold:
                return False
            until = now + self._cooldown
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET open_until = :until",
                ConditionExpression="attribute_not_exists(open_until) OR open_until < :now",
                ExpressionAttributeValues={
                    ":until": seconds_value(until),
                    ":now": seconds_value(now),
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False  # another invocation opened it first
            logger.warning("the circuit could not be written", extra={"error": str(exc)})
            return False
        except BotoCoreError as exc:
            logger.warning("the circuit could not be written", extra={"error": str(exc)})
            return False
        with self._lock:
            self._open_until = until
            self._read_at = now
        logger.warning(
            "the primary provider's circuit is open: sending through the failover provider",
            extra={"provider": self.provider, "seconds": self._cooldown, "failures": failures},
        )
        return True

    def _count(self, now: float) -> int:
        """Add one to the current window's count, or start a new window if it has passed;
        raises ``ClientError`` if other invocations keep racing it (three tries)."""
        cutoff = now - self._window
        for _ in range(3):
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=self._key,
                    UpdateExpression="ADD failures :one",
                    ConditionExpression="window_start > :cutoff",
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":cutoff": seconds_value(cutoff),
                    },
                    ReturnValues="UPDATED_NEW",
                )
                return int(answer["Attributes"]["failures"]["N"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key,
                    UpdateExpression="SET window_start = :now, failures = :one",
                    ConditionExpression=(
                        "attribute_not_exists(window_start) OR window_start <= :cutoff"
                    ),
                    ExpressionAttributeValues={
                        ":now": seconds_value(now),
                        ":one": {"N": "1"},
                        ":cutoff": seconds_value(cutoff),
                    },
                )
                return 1
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            # Another invocation started the window between the two writes: count in it.
        raise ClientError(
            {"Error": {"Code": "CircuitContention", "Message": "three tries lost"}}, "UpdateItem"
        )

    def _now(self) -> float:
        return self._clock.now().timestamp()
