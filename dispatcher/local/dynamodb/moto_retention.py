"""A message handed out by moto's SQS checks its retention from the one attribute it needs.

Why it exists: the local event bus's tap (:mod:`dispatcher.local.event_bus`) is an SQS queue
in the endpoint's process, and moto, for each message it hands out, checks the message's
retention by computing every attribute of the queue three times over (each counting the
queue's messages): about 1.5 ms per message, the endpoint's second costliest work per mail
after the history-and-delete transaction (``make bench``'s ``endpoint_by_operation``). The
check here reads ``MessageRetentionPeriod`` alone, with moto's own arithmetic.

Pinned to moto's version (:mod:`.moto_pin`) and held to moto's answer, for a message kept and one
past its retention, by ``tests/functional/test_moto_adapter.py``.
"""

from __future__ import annotations

from typing import Any

from dispatcher.local.dynamodb.moto_pin import is_replaced, replace_method

__all__ = ["install", "installed"]

_MARK = "_reads_one_attribute"


def installed() -> bool:
    from moto.sqs.models import SQSBackend

    return is_replaced(SQSBackend, "is_message_valid_based_on_retention_period", _MARK)


def install() -> None:
    """Make moto's retention check read one attribute; idempotent, on the moto it was written
    for only (:func:`.moto_pin.check_moto_version` raises otherwise)."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if installed():
        return

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    replace_method(
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        is_message_valid_based_on_retention_period,
        _MARK,
    )
