"""Benchmarks: how close the dispatcher runs to the provider's rate limit, and what it costs.

Every figure is a ratio (or a count) measured side by side in this one run, never an absolute
time compared with a constant: this machine is shared and noisy.

It starts `dispatcher dev` in a subprocess (moto's DynamoDB server and the sandbox, which
enforces the rate limit R and answers after the latency), creates its own `bench-*` tables on
that endpoint, and drives the real Dispatcher from this process, as Lambda would, with
batches of stream records. Run it with `make bench`; it prints a table and writes
bench/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before the package is imported: its loggers read these when they are created.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # a line per record drowns the table
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from dispatcher.clock import iso_utc
from dispatcher.dispatch import Dispatcher
from dispatcher.local.context import LocalContext
from dispatcher.local.sandbox_model import SANDBOX_API_KEY, SANDBOX_LOGIN_ID
from dispatcher.local.tables import create_tables, load_template
from dispatcher.observability import metrics
from dispatcher.settings import Settings

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
        self, rate: float, latency: float, workdir: Path, extra_args: tuple[str, ...] = ()
    ) -> None:
        env = {
            **os.environ,
            "DISPATCHER_STATE_DIR": str(workdir / "state"),
            "RATE_LIMIT_RPS": str(rate),
            "SEND_CONCURRENCY": "16",
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
        self.write_units = 0  # write request units, items under 1 KB: 2 per transaction item
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
            self.write_units += 2 * len(transact) if transact else 1
        elif name in READ_OPERATIONS:
            self.reads[name] = self.reads.get(name, 0) + 1
            keys = sum(len(t.get("Keys", [])) for t in body.get("RequestItems", {}).values())
            self.read_units += keys or 1

    def records(self, prefix: str, count: int) -> list[dict[str, Any]]:
        """Insert rows and return the INSERT records their stream would carry."""
        out = []
        for i in range(count):
            item = {
                "id": {"S": f"{prefix}{i:05}"},
                "to": {"S": "bench@example.com"},
                "subject": {"S": f"{prefix}{i:05}"},
                "text": {"S": "benchmark"},
            }
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
                metrics.clear_metrics()  # disabled, yet printed once 100 pile up
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


def sustained_rate(mails: list[dict[str, Any]]) -> float:
    """Accepted mails per second between the first and the last acceptance."""
    times = sorted(datetime.fromisoformat(m["received_at"]).timestamp() for m in mails)
    if len(times) < 2 or times[-1] == times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def measure_send_rate(stack: Stack, bench: Bench, prefix: str, count: int) -> dict[str, Any]:
    records = bench.records(prefix, count)
    bench.reset_counts()  # count the dispatcher's calls, not the rows this bench inserted
    started = time.monotonic()
    outcome = bench.handle(records)
    wall = time.monotonic() - started
    mails = stack.mails(prefix)
    subjects = [m["payload"]["subject"] for m in mails]
    kept, unsent = bench.leftovers(prefix, count)
    return {
        "rows": count,
        "rate": sustained_rate(mails),
        "wall_seconds": round(wall, 2),
        "mails": len(mails),
        "duplicates": len(subjects) - len(set(subjects)),
        "lost": unsent - kept,
        "kept_in_table": kept,
        **outcome,
    }


def shared_limit(stack: Stack, rate: float, rows: int, counts: tuple[int, ...]) -> list[dict]:
    """Aggregate sends/s over R with N concurrent invocations (shards), each with its own
    stream of rows, all against the one sandbox limit R; with the share of requests the
    sandbox refused (429) over its limit."""
    bench = Bench(stack, "shards", rate=rate, concurrency=16)
    out = []
    for shards in counts:
        per_shard = max(2, rows // shards)
        prefix = f"shards{shards}-"
        streams = [bench.records(f"{prefix}{k}-", per_shard) for k in range(shards)]
        dispatchers = [bench.shard() for _ in range(shards)]
        before = stack.stats()
        threads = [
            threading.Thread(target=bench.handle, args=(streams[k], dispatchers[k]))
            for k in range(shards)
        ]
        # Powertools prints metrics once 100 pile up, disabled or not; the shards add at once.
        with contextlib.redirect_stdout(io.StringIO()):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        after = stack.stats()
        mails = stack.mails(prefix)
        subjects = [m["payload"]["subject"] for m in mails]
        requests = after["requests"] - before["requests"]
        out.append(
            {
                "shards": shards,
                "ratio": sustained_rate(mails) / rate,
                "share_429": (after["over_limit"] - before["over_limit"]) / max(1, requests),
                "mails": len(mails),
                "duplicates": len(subjects) - len(set(subjects)),
            }
        )
    return out


def endpoint_requests(stack: Stack) -> int:
    """Requests the local DynamoDB endpoint has served so far (every caller's)."""
    return int(httpx.get(stack.ready["endpoint_url"] + "/_local/writes").json()["requests"])


def end_to_end(stack: Stack, rate: float, rows: int, prefix: str = "e2e-") -> dict[str, Any]:
    """Rows inserted into the local stack's send table at once (BatchWriteItem, 4 threads)
    until the last of them is accepted, through the stream, the poller and the function:
    rows/s over R.
    Also what each mail cost the DynamoDB endpoint in requests (stream reads, the poller's,
    the function's: everything), and the function's CPU."""
    send = stack.ready["send_table"]
    client = local_dynamodb(stack.ready["endpoint_url"])
    ids = [f"{prefix}{i:05}" for i in range(rows)]

    def put(chunk: list[str]) -> None:
        request: Any = {
            send: [
                {
                    "PutRequest": {
                        "Item": {
                            "id": {"S": row_id},
                            "to": {"S": "e2e@example.com"},
                            "subject": {"S": row_id},
                            "text": {"S": "end to end"},
                        }
                    }
                }
                for row_id in chunk
            ]
        }
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems")

    cpu_before = function_cpu_seconds(stack.process.pid)
    endpoint_cpu_before = endpoint_cpu_seconds(stack.process.pid)
    requests_before = endpoint_requests(stack)
    started = time.time()
    # As an application inserting a batch would: BatchWriteItem, 25 rows a request.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, [ids[i : i + 25] for i in range(0, len(ids), 25)]))
    inserted = time.time() - started
    deadline = time.monotonic() + 60 + rows / rate * 3
    mails: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        mails = stack.mails(prefix)
        if len({m["payload"]["subject"] for m in mails}) >= rows:
            break
        time.sleep(0.2)
    last = max(datetime.fromisoformat(m["received_at"]).timestamp() for m in mails)
    first = min(datetime.fromisoformat(m["received_at"]).timestamp() for m in mails)
    time.sleep(1.0)  # the last batch's bookkeeping
    cpu = function_cpu_seconds(stack.process.pid) - cpu_before
    endpoint_cpu = endpoint_cpu_seconds(stack.process.pid) - endpoint_cpu_before
    requests = endpoint_requests(stack) - requests_before
    return {
        "endpoint_requests_per_mail": round(requests / max(1, len(mails)), 2),
        "function_cpu_ms_per_mail": round(cpu / max(1, len(mails)) * 1000, 2),
        "endpoint_cpu_ms_per_mail": round(endpoint_cpu / max(1, len(mails)) * 1000, 2),
        "rows": rows,
        "mails": len(mails),
        "insert_seconds": round(inserted, 2),
        "first_mail_after_s": round(first - started, 3),
        "seconds": round(last - started, 2),
        "ratio": len(mails) / (last - started) / rate,
    }


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
    from dispatcher.providers.blastengine import bearer_token
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
    stack.faults(rate_limit=0.0, latency=0.0)
    sandbox_rps = load("sandbox", stack.ready["provider_url"])
    return {
        "dynamodb_requests_per_s": round(dynamodb_rps, 1),
        "sandbox_requests_per_s": round(sandbox_rps, 1),
    }


def function_cpu_seconds(dev_pid: int) -> float:
    """CPU used so far by the dispatcher's execution environments (the worker processes of
    `dispatcher dev`), from /proc: what Lambda bills and what bounds one invocation."""
    return children_cpu_seconds(dev_pid, b"DispatcherFunction")


def endpoint_cpu_seconds(dev_pid: int) -> float:
    """CPU used so far by the stack's DynamoDB endpoint (its own process). It serves one
    request at a time, so it can never use more than one core: its CPU per mail sets the
    ceiling of everything the stack measures end to end."""
    return children_cpu_seconds(dev_pid, b"dispatcher.local.dynamodb_server")


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


def stack_shards(rate: float, latency: float, counts: tuple[int, ...], rows: int) -> list[dict]:
    """The shared limit through the stack itself: `dispatcher dev --shards N`, each shard's
    invocations in execution environments that are processes, as on AWS. Sustained sends/s
    over R once the environments are warm, and the share of requests the sandbox refused."""
    out = []
    for shards in counts:
        with running_stack(rate, latency, ("--shards", str(shards))) as stack:
            end_to_end(stack, rate, 4 * shards, prefix="warm-")  # a cold start per environment
            before = stack.stats()
            run = end_to_end(stack, rate, rows, prefix="shards-")
            after = stack.stats()
            requests = after["requests"] - before["requests"]
            out.append(
                {
                    "shards": shards,
                    "ratio": sustained_rate(stack.mails("shards-")) / rate,
                    "end_to_end_ratio": run["ratio"],
                    "share_429": (after["over_limit"] - before["over_limit"]) / max(1, requests),
                    "mails": run["mails"],
                }
            )
    return out


def invoke_processes(stack: Stack, rate: float, processes: int = 4, per_process: int = 60):
    """`processes` concurrent `dispatcher invoke --seed` runs, each on an event file of its
    own rows and with the ready line's `env`, so they share the stack's account limit (its
    `RateLimitTable`), but on tables of their own that the stack's poller does not read (on
    its own send table, the poller would race them for every row): how long all the mail
    took over the ideal count / R, and the share of requests the sandbox refused."""
    tables = {
        "SendTable": "bench-invoke-send",
        "HistoryTable": "bench-invoke-history",
        "IdempotencyTable": "bench-invoke-idempotency",
        "SuppressionTable": "bench-invoke-suppression",
    }
    create_tables(stack.client, tables)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for p in range(processes):
            records = []
            for i in range(per_process):
                row_id = f"invoke-{p}-{i:03}"
                image = {
                    "id": {"S": row_id},
                    "to": {"S": "invoke@example.com"},
                    "subject": {"S": row_id},
                    "text": {"S": "four processes"},
                }
                records.append(
                    {
                        "eventID": row_id,
                        "eventName": "INSERT",
                        "eventSource": "aws:dynamodb",
                        "awsRegion": "us-east-1",
                        "dynamodb": {
                            "Keys": {"id": image["id"]},
                            "NewImage": image,
                            "SequenceNumber": str(10**20 + p * 1000 + i),
                            "StreamViewType": "NEW_AND_OLD_IMAGES",
                        },
                    }
                )
            path = Path(tmp) / f"invoke-{p}.json"
            path.write_text(json.dumps({"Records": records}))
            files.append(path)
        env = {
            **os.environ,
            **stack.ready["env"],
            "SEND_TABLE_NAME": tables["SendTable"],
            "HISTORY_TABLE_NAME": tables["HistoryTable"],
            "IDEMPOTENCY_TABLE_NAME": tables["IdempotencyTable"],
            "SUPPRESSION_TABLE_NAME": tables["SuppressionTable"],
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        before = stack.stats()
        started = time.time()
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "dispatcher.ops.cli", "invoke", "--seed", str(path)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for path in files
        ]
        for run in runs:
            run.wait(timeout=300)
        total = processes * per_process
        deadline = time.monotonic() + 120
        mails: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            mails = stack.mails("invoke-")
            if len({m["payload"]["subject"] for m in mails}) >= total:
                break
            time.sleep(0.2)
        after = stack.stats()
    times = sorted(datetime.fromisoformat(m["received_at"]).timestamp() for m in mails)
    first, last = times[0], times[-1]
    requests = after["requests"] - before["requests"]
    subjects = [m["payload"]["subject"] for m in mails]
    return {
        # Four Pythons importing boto3 and the function at once on this machine's cores,
        # before any of them can send: a cost of the processes, not of the limit.
        "first_mail_after_s": round(first - started, 2),
        "over_ideal_after_first_mail": round((last - first) / ((total - 1) / rate), 3),
        "processes": processes,
        "mails": len(mails),
        "duplicates": len(subjects) - len(set(subjects)),
        "seconds": round(last - started, 2),
        "over_ideal": round((last - started) / (total / rate), 3),
        "share_429": (after["over_limit"] - before["over_limit"]) / max(1, requests),
    }


#: Prices used for the cost figure (AWS, us-east-1, on-demand, as listed in 2026).
PRICES = {
    "lambda_arm64_gb_second_usd": 0.0000133334,
    "lambda_request_usd": 0.20 / 1_000_000,
    "dynamodb_write_request_unit_usd": 0.625 / 1_000_000,
    "dynamodb_read_request_unit_usd": 0.125 / 1_000_000,
    # GetRecords calls made by Lambda's DynamoDB trigger are not charged.
    "dynamodb_stream_read_request_unit_usd_via_lambda": 0.0,
    # EventBridge custom events, per 64 KB chunk of an entry (one delivery event is one).
    "eventbridge_custom_event_usd": 1.00 / 1_000_000,
}


def cost_per_100k(bench: Bench, mails: int, memory_mb: int) -> dict[str, Any]:
    """What 100,000 mails cost in AWS terms, from this run's counts and durations."""
    scale = 100_000 / max(1, mails)
    gb_seconds = bench.invocation_seconds * scale * memory_mb / 1024
    parts = {
        "lambda_compute_usd": gb_seconds * PRICES["lambda_arm64_gb_second_usd"],
        "lambda_requests_usd": bench.invocations * scale * PRICES["lambda_request_usd"],
        "dynamodb_writes_usd": bench.write_units
        * scale
        * PRICES["dynamodb_write_request_unit_usd"],
        "dynamodb_reads_usd": bench.read_units * scale * PRICES["dynamodb_read_request_unit_usd"],
        "stream_reads_usd": 0.0,
        "delivery_events_usd": bench.events_published
        * scale
        * PRICES["eventbridge_custom_event_usd"],
    }
    return {
        "total_usd": sum(parts.values()),
        **parts,
        "gb_seconds": gb_seconds,
        "memory_mb": memory_mb,
        "write_units_per_mail": bench.write_units / max(1, mails),
        "read_units_per_mail": bench.read_units / max(1, mails),
        "delivery_events_per_mail": bench.events_published / max(1, mails),
        "prices": PRICES,
    }


def function_package(workdir: Path) -> Path:
    """The function's code as `sam build` packages it (the Makefile's build target, bytecode
    included), with wheels and bytecode for this machine instead of arm64 and python3.13."""
    target = workdir / "function"
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "--silent",
            "build-DispatcherFunction",
            f"ARTIFACTS_DIR={target}",
            "LAMBDA_WHEELS=",
            f"PYTHON={sys.executable}",
            f"RUNTIME_PYTHON={sys.executable}",
        ],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return target


def import_ratio(package: Path, runs: int = 7) -> dict[str, Any]:
    """Median cold import time of the handler module over a bare `import boto3`, both from
    the function package in a fresh `python -S` that writes no bytecode (no site-packages,
    read-only code: Lambda's /var/task). With tracing on (the template's default) and off
    (`Tracing=PassThrough`), and without the bytecode the build ships."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(package),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(package),
        "SEND_TABLE_NAME": "s",
        "HISTORY_TABLE_NAME": "h",
        "IDEMPOTENCY_TABLE_NAME": "i",
        "DEFAULT_FROM_EMAIL": "a@example.com",
        "BLASTENGINE_LOGIN_ID": "x",
        "BLASTENGINE_API_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "false",
    }
    # The same package as the build made it before it shipped bytecode.
    source_only = package.parent / "source-only"
    shutil.copytree(package, source_only, ignore=shutil.ignore_patterns("__pycache__"))
    no_bytecode = {"PYTHONPATH": str(source_only)}

    def timed(statement: str, **overrides: str) -> float:
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        result = subprocess.run(
            [sys.executable, "-S", "-c", code],
            capture_output=True,
            text=True,
            env={**env, **overrides},
            check=True,
            cwd=package.parent,  # not on sys.path: only PYTHONPATH is
        )
        return float(result.stdout.strip().splitlines()[-1])

    times: dict[str, list[float]] = {"boto3": [], "traced": [], "untraced": [], "source": []}
    for _ in range(runs):  # interleaved, so all of them see the same machine
        times["boto3"].append(timed("import boto3"))
        times["traced"].append(timed("import dispatcher.handler"))
        times["untraced"].append(
            timed("import dispatcher.handler", POWERTOOLS_TRACE_DISABLED="true")
        )
        times["source"].append(timed("import dispatcher.handler", **no_bytecode))
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        **{f"{name}_ms": round(value * 1000, 1) for name, value in median.items()},
        "ratio": median["traced"] / median["boto3"],
        "ratio_untraced": median["untraced"] / median["boto3"],
        "without_bytecode_ratio": median["source"] / median["traced"],
    }


def peak_rss(stack: Stack) -> dict[str, Any]:
    """Peak RSS of a fresh process that imports the handler and handles a batch of 100."""
    script = f"""
import json, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from bench.bench import Bench, local_dynamodb
class S: pass
stack = S(); stack.ready = {json.dumps(stack.ready)}
stack.client = local_dynamodb(stack.ready["endpoint_url"])
bench = Bench(stack, "rss", rate=1000, concurrency=8)
bench.handle(bench.records("rss-", 100))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return {"peak_rss_mb": round(int(result.stdout.strip().splitlines()[-1]) / 1024, 1)}


def local_latency(stack: Stack, rows: int = 200, pace: float = 20.0) -> dict[str, Any]:
    """Insert -> history item through the local stack's stream, poller and handler."""
    send, history = "mail-dispatcher-send", "mail-dispatcher-history"
    inserted: dict[str, float] = {}
    for i in range(rows):
        row_id = f"lat-{i:04}"
        stack.client.put_item(
            TableName=send,
            Item={
                "id": {"S": row_id},
                "to": {"S": "lat@example.com"},
                "subject": {"S": row_id},
                "text": {"S": "latency"},
            },
        )
        inserted[row_id] = time.time()
        time.sleep(1 / pace)
    latencies: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(latencies) < rows and time.monotonic() < deadline:
        for row_id, at in inserted.items():
            if row_id in latencies:
                continue
            items = stack.client.query(
                TableName=history,
                KeyConditionExpression="#i = :i",
                ExpressionAttributeNames={"#i": "id"},
                ExpressionAttributeValues={":i": {"S": row_id}},
            )["Items"]
            if items:
                sent = datetime.fromisoformat(items[0]["sent_at"]["S"].replace("Z", "+00:00"))
                latencies[row_id] = sent.timestamp() - at
        time.sleep(0.5)
    values = sorted(latencies.values())
    from dispatcher.local.mapping import MappingConfig

    return {
        "rows": rows,
        "delivered": len(values),
        "insert_pace_per_s": pace,
        "p50_s": round(values[len(values) // 2], 3),
        "p95_s": round(values[int(len(values) * 0.95) - 1], 3),
        "batching_window_s": MappingConfig.from_template().batching_window,
    }


@contextmanager
def running_stack(rate: float, latency: float, extra_args: tuple[str, ...] = ()) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(rate, latency, Path(tmp), extra_args)
        try:
            yield stack
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="provider limit R (req/s)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency (s)")
    parser.add_argument("--rows", type=int, default=100, help="rows per throughput run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--speedup-latency",
        type=float,
        default=0.5,
        help="provider latency (s) for the speed-up over one record at a time: it can only "
        "show where R x latency >= 8",
    )
    parser.add_argument("--e2e-rows", type=int, default=300, help="rows for the end-to-end run")
    parser.add_argument(
        "--high-rate", type=float, default=50.0, help="R for the second end-to-end run"
    )
    parser.add_argument(
        "--dev-arg",
        action="append",
        default=[],
        help="an extra `dispatcher dev` argument, e.g. --dev-arg=--batching-window=0.5",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    if (
        args.rate <= 0
        or args.speedup_latency < 0
        or args.latency < 0
        or args.rows < 2
        or args.e2e_rows < 2
        or args.concurrency < 1
        or args.high_rate <= 0
    ):
        parser.error(
            "--rate must be > 0, the latencies >= 0, --rows and --e2e-rows >= 2, --concurrency >= 1"
        )
    r, results = args.rate, {}
    print(
        f"R = {r:g} req/s, latency = {args.latency * 1000:g} ms, {args.rows} rows per run",
        file=sys.stderr,
    )
    memory_mb = int(load_template()["Globals"]["Function"].get("MemorySize", 128))
    with running_stack(r, args.latency, tuple(args.dev_arg)) as stack:
        results["harness"] = harness_capacity(stack)
        stack.faults(rate_limit=r, latency=args.latency)
        harness = results["harness"]
        print(
            f"harness on this machine: DynamoDB endpoint {harness['dynamodb_requests_per_s']:g}"
            f" req/s, sandbox {harness['sandbox_requests_per_s']:g} req/s",
            file=sys.stderr,
        )
        # The first invocation of each execution environment is a cold start, as on Lambda
        # (python and the function's imports, in a process of its own): measured once, then
        # the throughput figure is taken with the environments warm.
        results["cold_start"] = end_to_end(stack, r, 20, prefix="cold-")
        results["end_to_end"] = end_to_end(stack, r, args.e2e_rows)
        results["end_to_end_ratio"] = results["end_to_end"]["ratio"]
        results["invoke_processes"] = invoke_processes(stack, r)

        clean = Bench(stack, "clean", rate=r, concurrency=args.concurrency)
        results["no_faults"] = measure_send_rate(stack, clean, "clean-", args.rows)
        mails = max(1, results["no_faults"]["mails"])
        results["writes"] = {
            "requests_per_mail": sum(clean.writes.values()) / mails,
            "units_per_mail": clean.write_units / mails,
            "by_operation": clean.writes,
        }
        results["writes_per_mail"] = results["writes"]["requests_per_mail"]
        results["reads"] = {
            "requests_per_mail": sum(clean.reads.values()) / mails,
            "units_per_mail": clean.read_units / mails,
            "by_operation": clean.reads,
        }
        # The harness's ceiling in mails/s, the lowest of: what its DynamoDB endpoint carries
        # at the requests a mail cost it end to end (counted by the endpoint); one core over
        # the endpoint's CPU per mail (it serves one request at a time, and the real mix of
        # conditional writes and transactions costs moto more than the capacity run's plain
        # reads and writes); what the sandbox answers.
        per_mail = results["end_to_end"]["endpoint_requests_per_mail"]
        endpoint_ms = results["end_to_end"]["endpoint_cpu_ms_per_mail"]
        one_core = 1000 / endpoint_ms if endpoint_ms else float("inf")
        ceiling = min(
            harness["dynamodb_requests_per_s"] / per_mail,
            one_core,
            harness["sandbox_requests_per_s"],
        )
        harness.update(
            dynamodb_requests_per_mail=round(per_mail, 2),
            endpoint_cpu_ms_per_mail=endpoint_ms,
            endpoint_one_core_mails_per_s=round(one_core, 1),
            ceiling_mails_per_s=round(ceiling, 1),
            r_over_ceiling=round(r / ceiling, 3),
        )
        if r > ceiling / 3:
            print(
                f"warning: R = {r:g} is more than a third of the harness's ceiling "
                f"({ceiling:.1f} mails/s): the figures below measure the harness too",
                file=sys.stderr,
            )
        results["cost_per_100k_mails"] = cost_per_100k(clean, mails, memory_mb)
        results["cost_per_100k_mails_usd"] = results["cost_per_100k_mails"]["total_usd"]

        results["shared_limit"] = shared_limit(stack, r, max(200, 2 * args.rows), (1, 2, 4, 8))

        stack.faults(rate_limited=0.10, server_error=0.02, retry_after=round(1 / r, 3), seed=7)
        faulty = Bench(stack, "faulty", rate=r, concurrency=args.concurrency)
        results["faults"] = measure_send_rate(stack, faulty, "faulty-", args.rows)
        stack.faults(rate_limited=0.0, server_error=0.0)

        # The speed-up can only show where a sequential loop is bound by latency, not by R.
        stack.faults(latency=args.speedup_latency)
        slow = Bench(stack, "slow", rate=r, concurrency=args.concurrency)
        results["slow_provider"] = measure_send_rate(stack, slow, "slow-", args.rows)
        naive = Bench(stack, "naive", rate=r, concurrency=1)
        results["sequential"] = measure_send_rate(stack, naive, "naive-", 20)
        stack.faults(latency=args.latency)
        results["local_latency"] = local_latency(stack)
        results["memory"] = peak_rss(stack)
    results["stack_shards"] = stack_shards(r, args.latency, (1, 2, 4, 8), args.e2e_rows)
    with running_stack(args.high_rate, args.latency, tuple(args.dev_arg)) as stack:
        end_to_end(stack, args.high_rate, 20, prefix="cold-")
        results["end_to_end_high_rate"] = end_to_end(stack, args.high_rate, args.e2e_rows)
    with tempfile.TemporaryDirectory() as tmp:
        results["import"] = import_ratio(function_package(Path(tmp)))

    worst = min(results["shared_limit"], key=lambda s: s["ratio"])
    harness = results["harness"]
    rows = [
        ("harness: DynamoDB endpoint req/s", harness["dynamodb_requests_per_s"], "measured"),
        ("harness: sandbox req/s", harness["sandbox_requests_per_s"], "measured"),
        (
            "harness: DynamoDB endpoint CPU per mail, end to end (ms)",
            harness["endpoint_cpu_ms_per_mail"],
            f"one core carries {harness['endpoint_one_core_mails_per_s']:g} mails/s",
        ),
        (
            f"harness ceiling, mails/s ({harness['dynamodb_requests_per_mail']:g} DynamoDB "
            "req/mail)",
            harness["ceiling_mails_per_s"],
            f"R = {r:g} is {harness['r_over_ceiling']:.0%} of it (<= 33%); "
            f"R = {args.high_rate:g} is {args.high_rate / harness['ceiling_mails_per_s']:.0%}",
        ),
        ("sends/s / R, no faults", results["no_faults"]["rate"] / r, ">= 0.95"),
        *(
            (
                f"  {s['shards']} shard(s) at once: sends/s / R, 429 share",
                f"{s['ratio']:.2f}, {s['share_429']:.1%}",
                ">= 0.95, < 1%",
            )
            for s in results["shared_limit"]
        ),
        ("  worst shard count: sends/s / R", worst["ratio"], ">= 0.95"),
        *(
            (
                f"  through the stack, --shards {s['shards']}: sends/s / R, 429 share",
                f"{s['ratio']:.2f}, {s['share_429']:.1%}",
                ">= 0.95, < 1%",
            )
            for s in results["stack_shards"]
        ),
        (
            f"end to end, {args.e2e_rows} rows inserted -> all sent, / R (warm)",
            results["end_to_end_ratio"],
            ">= 0.95",
        ),
        (
            f"end to end at R = {args.high_rate:g} (warm), / R",
            results["end_to_end_high_rate"]["ratio"],
            ">= 0.6",
        ),
        (
            "  first mail after the first insert, cold environments (s)",
            results["cold_start"]["first_mail_after_s"],
            "reported",
        ),
        (
            "  DynamoDB endpoint requests per mail, end to end (everything)",
            results["end_to_end"]["endpoint_requests_per_mail"],
            "reported",
        ),
        (
            "4 `dispatcher invoke` processes, 240 mails: time / ideal, 429 share",
            f"{results['invoke_processes']['over_ideal']:.2f}, "
            f"{results['invoke_processes']['share_429']:.1%}",
            "<= 1.25, < 1%",
        ),
        (
            "  the same from their first mail (processes started): time / ideal",
            results["invoke_processes"]["over_ideal_after_first_mail"],
            "reported",
        ),
        (
            "  first mail after the four processes were launched (s)",
            results["invoke_processes"]["first_mail_after_s"],
            "reported",
        ),
        ("sends/s / R, 10% 429 + 2% 5xx", results["faults"]["rate"] / r, ">= 0.85"),
        (
            "  lost / duplicates with faults",
            f"{results['faults']['lost']} / {results['faults']['duplicates']}",
            "0 / 0",
        ),
        (
            f"speed-up over one record at a time ({args.speedup_latency * 1000:g} ms latency)",
            results["slow_provider"]["rate"] / results["sequential"]["rate"],
            ">= 8x",
        ),
        (
            f"  sends/s / R at {args.speedup_latency * 1000:g} ms latency",
            results["slow_provider"]["rate"] / r,
            "reported",
        ),
        ("handler import / import boto3, traced", results["import"]["ratio"], "<= 1.5x"),
        ("  same, Tracing=PassThrough", results["import"]["ratio_untraced"], "<= 1.5x"),
        (
            "  handler import without shipped bytecode / with",
            results["import"]["without_bytecode_ratio"],
            "reported",
        ),
        ("peak RSS, batch of 100 (MB)", results["memory"]["peak_rss_mb"], "<= 100"),
        ("DynamoDB write requests per mail, limiter included", results["writes_per_mail"], "<= 4"),
        ("  DynamoDB read requests per mail", results["reads"]["requests_per_mail"], "reported"),
        ("AWS cost per 100,000 mails (USD)", results["cost_per_100k_mails_usd"], "reported"),
        (
            "  of which delivery events (USD), events per mail",
            f"{results['cost_per_100k_mails']['delivery_events_usd']:.3f}, "
            f"{results['cost_per_100k_mails']['delivery_events_per_mail']:.2f}",
            "reported",
        ),
        (
            "function CPU per sent mail, end to end (ms)",
            results["end_to_end"]["function_cpu_ms_per_mail"],
            "reported",
        ),
        (
            f"local insert -> history p50 / p95 (s), window "
            f"{results['local_latency']['batching_window_s']:g} s",
            f"{results['local_latency']['p50_s']} / {results['local_latency']['p95_s']}",
            "reported",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'figure':<{width}}  {'measured':>12}  target")
    for name, value, target in rows:
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown:>12}  {target}")
    results["parameters"] = {
        "rate": r,
        "latency": args.latency,
        "rows": args.rows,
        "concurrency": args.concurrency,
        "speedup_latency": args.speedup_latency,
        "e2e_rows": args.e2e_rows,
        "dev_args": args.dev_arg,
        "measured_at": iso_utc(datetime.now().astimezone()),
    }
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
