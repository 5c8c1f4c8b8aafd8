"""The local stack keeps its rows and history across a restart, and one state dir has one stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.e2e.conftest import DISPATCHER, running_stack, start_stack, stop_stack, wait_for


def test_rows_and_history_survive_a_clean_restart_and_nothing_is_resent(tmp_path: Path) -> None:
    # GIVEN a stack with one mail sent, one row failed and one scheduled
    with running_stack(tmp_path) as stack:
        stack.put({"id": "sent-1", "to": "a@example.com", "subject": "keep-sent", "text": "x"})
        stack.put({"id": "bad-1", "to": "nobody", "subject": "keep-bad", "text": "x"})
        stack.put(
            {
                "id": "later-1",
                "to": "c@example.com",
                "subject": "keep-later",
                "text": "x",
                "send_after": "2027-06-01T09:00:00+00:00",
            }
        )
        wait_for(lambda: stack.history("sent-1"), what="the send")
        wait_for(lambda: (stack.row("bad-1") or {}).get("status"), what="the failure stamp")
        wait_for(lambda: (stack.row("later-1") or {}).get("status"), what="the schedule")

    # WHEN it is started again on the same state dir
    with running_stack(tmp_path) as again:
        # THEN the history and the kept rows are there, as they were
        assert again.history("sent-1")
        assert again.row("bad-1")["error_kind"] == {"S": "invalid"}
        assert again.row("later-1")["status"] == {"S": "scheduled"}
        # and restoring them sent nothing: the new sandbox has no mail, the rows no new stamp
        assert again.mails("keep-") == []
        listing = json.loads(again.cli("ls", "--json").stdout)["rows"]
        assert {r["id"] for r in listing} == {"bad-1", "later-1"}

    # and --fresh starts empty
    with running_stack(tmp_path, "--fresh") as fresh:
        assert fresh.row("bad-1") is None
        assert fresh.history("sent-1") == []


def test_a_row_waiting_when_the_stack_was_killed_is_sent_after_the_restart(
    tmp_path: Path,
) -> None:
    # GIVEN a stack whose sandbox never answers in time, so a row stays pending, then kill -9
    stack = start_stack(tmp_path, "--sandbox-latency", "30")
    stack.put({"id": "waiting-1", "to": "w@example.com", "subject": "keep-waiting", "text": "x"})
    wait_for(lambda: (tmp_path / "state" / "tables.json").exists(), what="a save")
    wait_for(lambda: "waiting-1" in (tmp_path / "state" / "tables.json").read_text(), what="a save")
    stack.process.send_signal(signal.SIGKILL)
    stack.process.wait(timeout=10)

    # WHEN a new stack starts on the state dir (the lock died with the process); its first
    # try meets the dead send's idempotency record "in progress": the request may have been
    # taken, so the row waits for its look-up (README, "When the provider's answer never
    # came")
    again = start_stack(tmp_path)
    try:
        # THEN the look-up finds no such mail (the dead request was never answered, nor
        # taken), and the waiting row is sent, once (had the kill come before the send
        # started, there is nothing to look up: it is simply sent)
        wait_for(lambda: again.history("waiting-1"), timeout=60, what="the send after restart")
        [history] = again.history("waiting-1")
        assert "confirmed_by" not in history
        assert len(again.mails("keep-waiting")) == 1
    finally:
        stop_stack(again.process)


def test_a_second_stack_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        env = {**os.environ}
        second = subprocess.run(
            [*DISPATCHER, "--state-dir", str(tmp_path / "state"), "dev"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2
        assert "a local stack is already running on" in second.stderr
        # and the first stack's local.json is still there
        assert (tmp_path / "state" / "local.json").exists()
        assert stack.cli("ls").returncode == 0
    finally:
        stop_stack(stack.process)
