"""The real local stack (`dispatcher dev`) in a subprocess, on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

DISPATCHER = [sys.executable, "-m", "dispatcher.ops.cli"]


class RunningStack:
    """Handles on a running `dispatcher dev`: its ready line, tables, sandbox and CLI."""

    def __init__(
        self, process: subprocess.Popen[str], ready: dict[str, Any], state_dir: Path, log: Path
    ) -> None:
        self.process = process
        self.ready = ready
        self.state_dir = state_dir
        self.log = log
        self.local = json.loads((state_dir / "local.json").read_text())
        self.client = boto3.client(
            "dynamodb",
            endpoint_url=ready["endpoint_url"],
            region_name=ready["region"],
            aws_access_key_id="e2e",
            aws_secret_access_key="e2e",
        )
        root = (self.local["sandbox_url"] or self.ready["provider_url"]).rsplit("/api/", 1)[0]
        self.sandbox = httpx.Client(base_url=root, timeout=10)

    # --- the application's side: boto3 against the endpoint
    def put(self, row: dict[str, Any]) -> None:
        from boto3.dynamodb.types import TypeSerializer

        item = {k: TypeSerializer().serialize(v) for k, v in row.items()}
        self.client.put_item(TableName=self.ready["send_table"], Item=item)

    def row(self, row_id: str) -> dict[str, Any] | None:
        return self.client.get_item(
            TableName=self.ready["send_table"], Key={"id": {"S": row_id}}, ConsistentRead=True
        ).get("Item")

    def update(self, row_id: str, expression: str, names: dict, values: dict) -> None:
        self.client.update_item(
            TableName=self.ready["send_table"],
            Key={"id": {"S": row_id}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def history(self, row_id: str) -> list[dict[str, Any]]:
        return self.client.query(
            TableName=self.ready["history_table"],
            KeyConditionExpression="#i = :i",
            ExpressionAttributeNames={"#i": "id"},
            ExpressionAttributeValues={":i": {"S": row_id}},
            ConsistentRead=True,
        )["Items"]

    def mails(self, prefix: str = "") -> list[dict[str, Any]]:
        mails = self.sandbox.get("/sandbox/mails").json()["mails"]
        return [m for m in mails if str(m["payload"].get("subject", "")).startswith(prefix)]

    def faults(self, **faults: Any) -> None:
        self.sandbox.post("/sandbox/faults", json=faults).raise_for_status()

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DISPATCHER_STATE_DIR": str(self.state_dir)}
        return subprocess.run(
            [*DISPATCHER, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_stack(tmp: Path, *args: str, env: dict[str, str] | None = None) -> RunningStack:
    state_dir = tmp / "state"
    log = tmp / "dev.log"
    process = subprocess.Popen(
        [*DISPATCHER, "--state-dir", str(state_dir), "dev", "--sweep-interval", "0.5", *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "RATE_LIMIT_RPS": "200", "SEND_CONCURRENCY": "16", **(env or {})},
    )
    line: list[str] = []
    first_line = threading.Event()

    def drain() -> None:
        # Keep reading: a pipe nobody reads fills up and blocks the process writing to it.
        for text in process.stdout:  # type: ignore[union-attr]
            line.append(text)
            first_line.set()
        first_line.set()

    threading.Thread(target=drain, daemon=True).start()
    first_line.wait(timeout=60)
    if not line or not line[0].strip():
        stop_stack(process)
        raise AssertionError(f"dispatcher dev did not get ready:\n{log.read_text()[-3000:]}")
    return RunningStack(process, json.loads(line[0]), state_dir, log)


def stop_stack(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_stack(
    tmp: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[RunningStack]:
    """A stack for the length of a `with` block: stopped however the block ends."""
    running = start_stack(tmp, *args, env=env)
    try:
        yield running
    finally:
        stop_stack(running.process)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
