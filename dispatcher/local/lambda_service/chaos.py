"""Faults injected into the function's own DynamoDB client, for ``dispatcher dev``'s chaos
flags and the fault suite: calls failing as DynamoDB fails under load, and the process
killed (SIGKILL: nothing cleans up) at the moments where dying hurts most.

Both hook botocore's events on boto3's default session before the function's handler is
imported (:mod:`.bootstrap`), so they are on the client the dispatcher shares with Powertools
Idempotency and see every DynamoDB call the function makes, and nothing else's.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["KillPlan", "KillPoint", "KillSwitch", "throttle_some_calls"]


def throttle_some_calls(events: Any, share: float, rng: random.Random) -> None:
    """A share of the DynamoDB calls of the clients on ``events`` (a client's or a session's
    event emitter) fail before being sent: throttled, or (for TransactWriteItems) cancelled
    by a conflicting transaction."""
    from botocore.exceptions import ClientError

    lock = threading.Lock()

    def maybe_fail(model: Any, **_: Any) -> None:
        with lock:
            unlucky = rng.random() < share
        if not unlucky:
            return
        if model.name == "TransactWriteItems":
            raise ClientError(
                {
                    "Error": {
                        "Code": "TransactionCanceledException",
                        "Message": "Transaction cancelled (injected)",
                    },
                    "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
                },
                model.name,
            )
        raise ClientError(
            {
                "Error": {
                    "Code": "ProvisionedThroughputExceededException",
                    "Message": "throttled (injected)",
                }
            },
            model.name,
        )

    events.register("before-call.dynamodb.*", maybe_fail)


class KillPoint(StrEnum):
    """Where a doomed invocation dies, named after what it leaves behind."""

    #: The idempotency record says "in progress"; the provider has not been called yet.
    SENDING = "sending"
    #: The provider accepted the mail and its idempotency record is saved; no history yet.
    SENT = "sent"
    #: The history + delete transaction committed; the function never heard back.
    TRANSACTION = "transaction"
    #: A failure stamp about to be written, or written but unacknowledged.
    STAMPING = "stamping"


@dataclass(frozen=True)
class KillPlan:
    """Die at the ``hit``-th time this invocation reaches ``point``; ``after`` picks the
    side of the DynamoDB call (for ``stamping``: written or not)."""

    point: KillPoint
    hit: int = 1
    after: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point.value, "hit": self.hit, "after": self.after}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KillPlan:
        return cls(KillPoint(data["point"]), int(data["hit"]), bool(data["after"]))

    @classmethod
    def draw(cls, rng: random.Random, point: KillPoint) -> KillPlan:
        """Early in the batch, so that most doomed invocations do get there."""
        return cls(point, hit=rng.randint(1, 3), after=rng.random() < 0.5)


class KillSwitch:
    """Kills this process where the current invocation's plan says."""

    def __init__(self, *, send_table: str, idempotency_table: str) -> None:
        self._send_table = send_table
        self._idempotency_table = idempotency_table
        self._lock = threading.Lock()
        self._plan: KillPlan | None = None
        self._hits = 0

    def arm(self, plan: KillPlan | None) -> None:
        with self._lock:
            self._plan, self._hits = plan, 0

    def install(self, events: Any) -> None:
        """Watch the DynamoDB calls of the clients on ``events`` (an event emitter)."""
        events.register("before-parameter-build.dynamodb.*", self._note_table)
        events.register("before-call.dynamodb.*", self._before)
        events.register("after-call.dynamodb.*", self._after)

    def _note_table(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["chaos_table"] = params.get("TableName")

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name == "TransactWriteItems":
            self._reached(KillPoint.SENT)
        elif model.name == "UpdateItem" and context.get("chaos_table") == self._send_table:
            self._reached(KillPoint.STAMPING, after=False)

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        table = context.get("chaos_table")
        if model.name == "PutItem" and table == self._idempotency_table:
            self._reached(KillPoint.SENDING)
        elif model.name == "TransactWriteItems":
            self._reached(KillPoint.TRANSACTION)
        elif model.name == "UpdateItem" and table == self._send_table:
            self._reached(KillPoint.STAMPING, after=True)

    def _reached(self, point: KillPoint, *, after: bool | None = None) -> None:
        with self._lock:
            plan = self._plan
            if plan is None or plan.point is not point:
                return
            if after is not None and after != plan.after:
                return
            self._hits += 1
            if self._hits < plan.hit:
                return
            # No one else may run on while the line is written: the process dies holding it.
            side = "" if after is None else (" (after the write)" if after else " (before it)")
            sys.stderr.write(
                f'{{"level":"WARNING","message":"injected kill","kill_point":"{point.value}",'
                f'"detail":"SIGKILL at {point.value}{side}"}}\n'
            )
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
