"""The reputation guard through the local stack: a sandbox that bounces every mail it takes,
newsletters until the guard pauses them, a password reset still sent, and a resume."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import RunningStack, running_stack, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(
        tmp_path_factory.mktemp("reputation"),
        "--no-persist",
        "--sandbox-bounce-share",
        "1",
        env={"PAUSE_MIN_VOLUME": "4"},
    ) as running:
        yield running


def _status(stack: RunningStack, row_id: str) -> str | None:
    row = stack.row(row_id)
    return row.get("status", {}).get("S") if row else None


def test_a_category_that_bounces_is_paused_and_resumed_and_others_are_sent(
    stack: RunningStack,
) -> None:
    # GIVEN four newsletters the sandbox takes, then reports as hard bounces
    for n in range(4):
        stack.put({"id": f"news-{n}", "to": f"r{n}@example.com", "category": "newsletter",
                   "subject": f"news {n}", "text": "x"})  # fmt: skip
    for n in range(4):
        wait_for(lambda n=n: (stack.history(f"news-{n}") or [{}])[0].get("bounce_type"),
                 what=f"news-{n}'s bounce")  # fmt: skip
    # WHEN another newsletter comes
    stack.put({"id": "news-late", "to": "late@example.com", "category": "newsletter",
               "subject": "late", "text": "x"})  # fmt: skip
    # THEN it stays, paused, naming the share; no request reached the sandbox for it
    wait_for(lambda: _status(stack, "news-late") == "paused", what="the pause")
    assert "PAUSE_BOUNCE_RATE" in stack.row("news-late")["last_error"]["S"]
    assert stack.mails("late") == []
    # AND a password reset is still sent
    stack.put({"id": "reset-1", "to": "reset@example.com", "subject": "reset", "text": "x"})
    wait_for(lambda: stack.mails("reset"), what="the transactional mail sent")
    # WHEN a person resumes the newsletter
    done = stack.cli("resume", "--category", "newsletter", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["refired"] == ["news-late"]
    # THEN the held row goes out
    wait_for(lambda: stack.mails("late"), what="the resumed newsletter sent")
