"""The bench's harness: the local stack it drives, the real Dispatcher fed stream batches as
Lambda would feed it, and what the harness itself can carry (its ceiling), measured first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before the package is imported: its loggers read these when they are created.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # a line per record drowns the table
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from dispatcher.config.settings import Settings
from dispatcher.flow.dispatch import Dispatcher
from dispatcher.local.dynamodb.server import WRITES_PATH
from dispatcher.local.dynamodb.tables import create_tables
from dispatcher.local.lambda_service.context import LocalContext
from dispatcher.local.sandbox.model import SANDBOX_API_KEY, SANDBOX_LOGIN_ID

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
READ_OPERATIONS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")


def local_dynamodb(endpoint_url: str, service: str = "dynamodb") -> Any:
    """A DynamoDB (or other ``service``) client for the local endpoint, which takes any
    credentials."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


class Stack:
    """`dispatcher dev` in a subprocess, and clients for its endpoint and sandbox."""

    def __init__(
        self,
        rate: float,
        latency: float,
        workdir: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "DISPATCHER_STATE_DIR": str(workdir / "state"),
            "RATE_LIMIT_RPS": str(rate),
            "SEND_CONCURRENCY": "16",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dispatcher.ops.cli",
                "dev",
                "--sandbox-rps",
                str(rate),
                "--sandbox-latency",
                str(latency),
                "--sweep-interval",
                "1",
                "--no-persist",  # the bench measures the dispatcher, not the table saves
                *extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=(workdir / "dev.log").open("w"),
            text=True,
            env=env,
        )
        self.ready = json.loads(self.process.stdout.readline())  # type: ignore[union-attr]
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        self.client = local_dynamodb(self.ready["endpoint_url"])
        self.sandbox_root = self.ready["provider_url"].rsplit("/api/", 1)[0]
        self.http = httpx.Client(base_url=self.sandbox_root, timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def faults(self, **faults: Any) -> None:
        self.http.post("/sandbox/faults", json=faults).raise_for_status()

    def stats(self) -> dict[str, int]:
        """Requests the sandbox answered, and those it refused over its rate limit."""
        return dict(self.http.get("/sandbox/stats").json())

    def mails(self, prefix: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.http.get("/sandbox/mails").json()["mails"]
            if m["payload"]["subject"].startswith(prefix)
        ]


class Bench:
    """Dispatchers on their own tables at the stack's endpoint, sharing one account limit
    (their own ``RateLimitTable``), as deployed."""

    def __init__(self, stack: Stack, name: str, *, rate: float, concurrency: int) -> None:
        self.stack = stack
        self.names = {
            "SendTable": f"bench-{name}-send",
            "HistoryTable": f"bench-{name}-history",
            "IdempotencyTable": f"bench-{name}-idempotency",
            "SuppressionTable": f"bench-{name}-suppression",
            "RateLimitTable": f"bench-{name}-limit",
            "SentMailTable": f"bench-{name}-sent-mail",
            "TemplatesTable": f"bench-{name}-templates",
            "ReputationTable": f"bench-{name}-reputation",
        }
        create_tables(stack.client, self.names)
        self.settings = Settings.from_env(
            {},
            send_table_name=self.names["SendTable"],
            history_table_name=self.names["HistoryTable"],
            idempotency_table_name=self.names["IdempotencyTable"],
            # As deployed: every recipient is looked up in the suppression list first, and
            # every request slot is leased from the account's shared limit.
            suppression_table_name=self.names["SuppressionTable"],
            rate_limit_table_name=self.names["RateLimitTable"],
            # As deployed (HistoryBodyDays 30): the mail as sent is kept beside the history.
            sent_mail_table_name=self.names["SentMailTable"],
            templates_table_name=self.names["TemplatesTable"],
            # As deployed: categories, and the reputation guard read once per batch.
            mail_categories="newsletter",
            reputation_table_name=self.names["ReputationTable"],
            default_from_email="bench@example.com",
            blastengine_base_url=stack.ready["provider_url"],
            blastengine_login_id=SANDBOX_LOGIN_ID,
            blastengine_api_key=SANDBOX_API_KEY,
            rate_limit_rps=rate,
            send_concurrency=concurrency,
            # As deployed: every outcome is a delivery event on the stack's bus.
            event_bus_name=stack.ready.get("event_bus") or None,
        )
        # Its own client, so that counting this dispatcher's calls counts nothing else.
        self.client = local_dynamodb(stack.ready["endpoint_url"])
        self.events_client = local_dynamodb(stack.ready["endpoint_url"], "events")
        self.dispatcher = Dispatcher.from_settings(
            self.settings, dynamodb_client=self.client, events_client=self.events_client
        )
        self.writes: dict[str, int] = {}
        self.write_units = 0  # write request units: per KB of item, twice in a transaction
        self.reads: dict[str, int] = {}
        self.read_units = 0  # read request units, strongly consistent items under 4 KB
        self.invocations = 0
        self.invocation_seconds = 0.0
        self._lock = threading.Lock()  # the send threads count at once
        self.client.meta.events.register("before-call.dynamodb.*", self._count)

    def shard(self) -> Dispatcher:
        """Another concurrent invocation's dispatcher (its own execution environment)."""
        return Dispatcher.from_settings(
            self.settings,
            dynamodb_client=local_dynamodb(self.stack.ready["endpoint_url"]),
            events_client=self.events_client,
        )

    @property
    def events_published(self) -> int:
        events = self.dispatcher.events
        return events.published if events is not None else 0

    def reset_counts(self) -> None:
        if self.dispatcher.events is not None:
            self.dispatcher.events.published = 0
        self.writes, self.reads = {}, {}
        self.write_units = self.read_units = self.invocations = 0
        self.invocation_seconds = 0.0

    def _count(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        with self._lock:
            self._count_call(model.name, body)

    def _count_call(self, name: str, body: dict[str, Any]) -> None:
        if name in WRITE_OPERATIONS:
            self.writes[name] = self.writes.get(name, 0) + 1
            transact = body.get("TransactItems", [])
            if transact:
                self.write_units += sum(2 * _write_units(next(iter(t.values()))) for t in transact)
            else:
                self.write_units += _write_units(body)
        elif name in READ_OPERATIONS:
            self.reads[name] = self.reads.get(name, 0) + 1
            keys = sum(len(t.get("Keys", [])) for t in body.get("RequestItems", {}).values())
            self.read_units += keys or 1

    def records(
        self, prefix: str, count: int, template: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Insert rows (each naming ``template``, ``{"template": ..., "vars": ...}`` in
        DynamoDB JSON, where given) and return the INSERT records their stream would carry."""
        out = []
        for i in range(count):
            item = {"id": {"S": f"{prefix}{i:05}"}, "to": {"S": "bench@example.com"}}
            if template is None:
                item |= {"subject": {"S": f"{prefix}{i:05}"}, "text": {"S": "benchmark"}}
            else:
                item |= template
            self.client.put_item(TableName=self.names["SendTable"], Item=item)
            out.append(
                {
                    "eventID": f"{prefix}{i}",
                    "eventName": "INSERT",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": {
                        "Keys": {"id": item["id"]},
                        "NewImage": item,
                        "SequenceNumber": str(10**20 + i),
                        "ApproximateCreationDateTime": int(time.time()),
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    },
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:0:table/bench/stream/x",
                }
            )
        return out

    def handle(
        self, records: list[dict[str, Any]], dispatcher: Dispatcher | None = None
    ) -> dict[str, Any]:
        """Handle records in batches of 100 until none is left for retry (like Lambda)."""
        pending = records
        for _ in range(20):
            if not pending:
                break
            failed: set[str] = set()
            for start in range(0, len(pending), 100):
                batch = pending[start : start + 100]
                started = time.monotonic()
                response = (dispatcher or self.dispatcher).handle_batch(
                    {"Records": batch}, LocalContext(timeout_seconds=120)
                )
                self.invocations += 1
                self.invocation_seconds += time.monotonic() - started
                failed |= {f["itemIdentifier"] for f in response["batchItemFailures"]}
            pending = [r for r in pending if r["dynamodb"]["SequenceNumber"] in failed]
        return {"left_for_retry": len(pending)}

    def leftovers(self, prefix: str, count: int) -> tuple[int, int]:
        """(rows still in the send table, rows with no history item)."""
        client = self.stack.client  # not counted: these reads are the bench's, not the function's
        kept = sum(
            1
            for i in range(count)
            if client.get_item(
                TableName=self.names["SendTable"], Key={"id": {"S": f"{prefix}{i:05}"}}
            ).get("Item")
        )
        unsent = sum(
            1
            for i in range(count)
            if not client.query(
                TableName=self.names["HistoryTable"],
                KeyConditionExpression="#i = :i",
                ExpressionAttributeNames={"#i": "id"},
                ExpressionAttributeValues={":i": {"S": f"{prefix}{i:05}"}},
            )["Items"]
        )
        return kept, unsent


def endpoint_operations(stack: Stack) -> dict[str, dict[str, float]]:
    """The requests the local DynamoDB endpoint has served so far (every caller's) and their
    CPU seconds, by operation (``PutItem``, ...)."""
    answer = httpx.get(stack.ready["endpoint_url"] + WRITES_PATH).json()
    return {name.rsplit(".", 1)[-1]: v for name, v in answer["by_operation"].items()}


def requests_served(operations: dict[str, dict[str, float]]) -> int:
    """All the requests of an :func:`endpoint_operations` reading."""
    return int(sum(v["requests"] for v in operations.values()))


def per_mail_by_operation(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], mails: int
) -> dict[str, dict[str, float]]:
    """What each operation cost the endpoint per mail between two readings, costliest first:
    where the harness's ceiling goes."""
    out = {}
    for name, now in after.items():
        was = before.get(name, {"requests": 0, "cpu_s": 0.0})
        requests = (now["requests"] - was["requests"]) / max(1, mails)
        cpu_ms = (now["cpu_s"] - was["cpu_s"]) * 1000 / max(1, mails)
        if requests >= 0.01:
            out[name] = {"requests": round(requests, 2), "cpu_ms": round(cpu_ms, 2)}
    return dict(sorted(out.items(), key=lambda item: -item[1]["cpu_ms"]))


_LOAD_SCRIPT = """
import json, sys, time, threading
kind, url, seconds, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
counts = [0] * threads
def dynamodb(n):
    import boto3
    c = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench")
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        key = {"id": {"S": f"cap-{n}-{i % 50}"}}
        if i % 2:
            c.get_item(TableName="bench-capacity", Key=key, ConsistentRead=True)
        else:
            c.put_item(TableName="bench-capacity", Item={**key, "v": {"N": str(i)}})
        i += 1
        counts[n] += 1
def sandbox(n):
    import httpx
    from dispatcher.providers.blastengine.client import bearer_token
    h = {"Authorization": "Bearer " + bearer_token("sandbox", "sandbox-api-key")}
    body = {"from": {"email": "cap@example.com"}, "to": "cap@example.com", "subject": "cap",
            "encode": "UTF-8", "text_part": "capacity"}
    with httpx.Client(timeout=30) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            c.post(url + "/deliveries/transaction", json=body, headers=h)
            counts[n] += 1
work = [threading.Thread(target=globals()[kind], args=(n,)) for n in range(threads)]
[t.start() for t in work]; [t.join() for t in work]
print(json.dumps({"requests": sum(counts), "seconds": seconds}))
"""


def harness_capacity(stack: Stack, seconds: float = 4.0) -> dict[str, Any]:
    """What the local harness itself carries on this machine, before any figure that it
    bounds: requests/s of the DynamoDB endpoint (half consistent GetItem, half PutItem) and of
    the sandbox (transaction sends, no rate limit), each driven by 4 client processes of 4
    threads, as the function's environments are processes of their own."""
    stack.client.create_table(
        TableName="bench-capacity",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def load(kind: str, url: str) -> float:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _LOAD_SCRIPT, kind, url, str(seconds), "4"],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for _ in range(4)
        ]
        answers = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        return sum(a["requests"] for a in answers) / seconds

    dynamodb_rps = load("dynamodb", stack.ready["endpoint_url"])
    # A sandbox of its own, the stack's code in a process of its own as the stack's is: the
    # thousands of mails this sends would otherwise sit in the stack's mail log, and its
    # sweeper would look each one up in the history while the end-to-end figures run.
    from dispatcher.local.sandbox.process import SandboxProcess

    with SandboxProcess(login_id=SANDBOX_LOGIN_ID, api_key=SANDBOX_API_KEY) as sandbox:
        sandbox_rps = load("sandbox", sandbox.base_url)
    return {
        "dynamodb_requests_per_s": round(dynamodb_rps, 1),
        "sandbox_requests_per_s": round(sandbox_rps, 1),
    }


def function_cpu_seconds(dev_pid: int) -> float:
    """CPU used so far by the dispatcher's execution environments (`dispatcher dev`'s runtime
    client processes on its handler), from /proc: what Lambda bills and what bounds one
    invocation."""
    return children_cpu_seconds(dev_pid, b"dispatcher.handler.lambda_handler")


def endpoint_cpu_seconds(dev_pid: int) -> float:
    """CPU used so far by the stack's DynamoDB endpoint (its own process). It serves one
    request at a time, so it can never use more than one core: its CPU per mail sets the
    ceiling of everything the stack measures end to end."""
    return children_cpu_seconds(dev_pid, b"dispatcher.local.dynamodb.server")


def children_cpu_seconds(dev_pid: int, marker: bytes) -> float:
    """CPU (user + system) of `dispatcher dev`'s child processes whose command names
    ``marker``, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == dev_pid and marker in command:
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


@contextmanager
def running_stack(
    rate: float,
    latency: float,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(rate, latency, Path(tmp), extra_args, env)
        try:
            yield stack
        finally:
            stack.stop()


def _write_units(request: dict[str, Any]) -> int:
    """A write's request units: one per KB of the item a Put writes (an Update or Delete is
    counted as one: the items they touch here are under 1 KB)."""
    item = request.get("Item")
    if not isinstance(item, dict):
        return 1
    size = len(json.dumps(item, separators=(",", ":")).encode())  # a little over DynamoDB's
    return max(1, -(-size // 1024))
