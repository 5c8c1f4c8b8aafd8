"""A thread of the local stack that dies stops the stack, and says why."""

from __future__ import annotations

from pathlib import Path

from dispatcher.local.stack import LocalStack, StackOptions


def test_a_dying_thread_stops_the_stack_with_its_reason(tmp_path: Path) -> None:
    # GIVEN a stack (not started: only its thread guard is under test)
    stack = LocalStack(StackOptions(state_dir=tmp_path))

    def poll_forever() -> None:
        raise AttributeError("'str' object has no attribute 'get'")

    # WHEN one of its threads dies
    stack._spawn("poller", poll_forever)
    stack._threads[0].join(timeout=5)

    # THEN the stack is stopping, and its failure names the thread and the error
    assert stack._stop.is_set()
    assert stack.failure == (
        "the poller thread died (AttributeError: 'str' object has no attribute 'get')"
    )
