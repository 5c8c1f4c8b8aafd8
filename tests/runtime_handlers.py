"""Handlers for the runtime client's tests (tests/functional/test_runtime_client.py): each does
one thing Lambda must answer for."""

from __future__ import annotations

import time
from typing import Any

_held: list[bytearray] = []


def context(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What the runtime client built the context from."""
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
    }


def raises(event: dict[str, Any], context: Any) -> None:
    raise ValueError(f"cannot send {event.get('id')}")


def sleeps(event: dict[str, Any], context: Any) -> str:
    time.sleep(float(event["seconds"]))
    return "woke"


def grows(event: dict[str, Any], context: Any) -> str:
    """Holds ``mb`` more megabytes each invocation (touched, so they are resident)."""
    _held.append(bytearray(b"x" * (int(event["mb"]) * 1024 * 1024)))
    time.sleep(1.0)  # long enough to be seen
    return "grew"
