"""The local stack's event bus, as the template's: delivery events on moto's EventBridge.

The functions publish to it as deployed (``EVENT_BUS_NAME``), so an application's rule made
on the stack's endpoint (with an SQS target, say) receives the events as on AWS. The stack
also listens itself, through a rule and a queue of its own, and appends every event to
``events.jsonl`` in its state directory: what ``dispatcher events`` prints.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

__all__ = ["BUS_NAME", "EVENTS_FILE", "LocalEventBus"]

BUS_NAME = "mail-dispatcher-events"
EVENTS_FILE = "events.jsonl"
_TAP = "dispatcher-dev-tap"


class LocalEventBus:
    """Creates the bus and the stack's own tap, and drains the tap into a file."""

    def __init__(self, events: Any, sqs: Any, path: Path) -> None:
        self._events = events
        self._sqs = sqs
        self.path = path
        self._queue: str | None = None

    def create(self) -> str:
        """The bus (kept if it exists) and the tap; returns the bus's name."""
        with contextlib.suppress(ClientError):  # already there (a restart)
            self._events.create_event_bus(Name=BUS_NAME)
        self._queue = self._sqs.create_queue(QueueName=_TAP)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._events.put_rule(
            Name=_TAP,
            EventBusName=BUS_NAME,
            EventPattern=json.dumps({"source": ["mail-dispatcher"]}),
        )
        self._events.put_targets(
            Rule=_TAP, EventBusName=BUS_NAME, Targets=[{"Id": "tap", "Arn": arn}]
        )
        return BUS_NAME

    def drain(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Append what the tap received to the file, until ``stop``."""
        assert self._queue is not None, "create() first"
        while not stop.is_set():
            got = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10)
            messages = got.get("Messages", [])
            if messages:
                with self.path.open("a", encoding="utf-8") as out:
                    for message in messages:
                        out.write(json.dumps(json.loads(message["Body"])) + "\n")
                self._sqs.delete_message_batch(
                    QueueUrl=self._queue,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
                continue
            stop.wait(interval)
