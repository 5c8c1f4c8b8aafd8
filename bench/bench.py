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
from dispatcher.local.stack import SANDBOX_API_KEY, SANDBOX_LOGIN_ID
from dispatcher.local.tables import create_tables
from dispatcher.observability import metrics
from dispatcher.settings import Settings

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def local_dynamodb(endpoint_url: str) -> Any:
    """A DynamoDB client for the local endpoint, which takes any credentials."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


class Stack:
    """`dispatcher dev` in a subprocess, and clients for its endpoint and sandbox."""

    def __init__(self, rate: float, latency: float, workdir: Path) -> None:
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
                "dispatcher.cli",
                "dev",
                "--sandbox-rps",
                str(rate),
                "--sandbox-latency",
                str(latency),
                "--sweep-interval",
                "1",
                "--no-persist",  # the bench measures the dispatcher, not the table saves
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

    def mails(self, prefix: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.http.get("/sandbox/mails").json()["mails"]
            if m["payload"]["subject"].startswith(prefix)
        ]


class Bench:
    """One dispatcher, on its own tables at the stack's endpoint."""

    def __init__(self, stack: Stack, name: str, *, rate: float, concurrency: int) -> None:
        self.stack = stack
        self.names = {
            "SendTable": f"bench-{name}-send",
            "HistoryTable": f"bench-{name}-history",
            "IdempotencyTable": f"bench-{name}-idempotency",
            "SuppressionTable": f"bench-{name}-suppression",
        }
        create_tables(stack.client, self.names)
        settings = Settings.from_env(
            {},
            send_table_name=self.names["SendTable"],
            history_table_name=self.names["HistoryTable"],
            idempotency_table_name=self.names["IdempotencyTable"],
            # As deployed: every recipient is looked up in the suppression list first.
            suppression_table_name=self.names["SuppressionTable"],
            default_from_email="bench@example.com",
            blastengine_base_url=stack.ready["provider_url"],
            blastengine_login_id=SANDBOX_LOGIN_ID,
            blastengine_api_key=SANDBOX_API_KEY,
            rate_limit_rps=rate,
            send_concurrency=concurrency,
        )
        # Its own client, so that counting this dispatcher's writes counts nothing else.
        self.client = local_dynamodb(stack.ready["endpoint_url"])
        self.dispatcher = Dispatcher.from_settings(settings, dynamodb_client=self.client)
        self.writes: dict[str, int] = {}
        self.write_items = 0
        self.client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name in WRITE_OPERATIONS:
            self.writes[model.name] = self.writes.get(model.name, 0) + 1
            body = json.loads(params.get("body") or b"{}")
            self.write_items += len(body.get("TransactItems", [])) or 1

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

    def handle(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Handle records in batches of 100 until none is left for retry (like Lambda)."""
        pending = records
        for _ in range(20):
            if not pending:
                break
            failed: set[str] = set()
            for start in range(0, len(pending), 100):
                batch = pending[start : start + 100]
                response = self.dispatcher.handle_batch(
                    {"Records": batch}, LocalContext(timeout_seconds=120)
                )
                metrics.clear_metrics()  # disabled, yet printed once 100 pile up
                failed |= {f["itemIdentifier"] for f in response["batchItemFailures"]}
            pending = [r for r in pending if r["dynamodb"]["SequenceNumber"] in failed]
        return {"left_for_retry": len(pending)}

    def leftovers(self, prefix: str, count: int) -> tuple[int, int]:
        """(rows still in the send table, rows with no history item)."""
        kept = sum(
            1
            for i in range(count)
            if self.client.get_item(
                TableName=self.names["SendTable"], Key={"id": {"S": f"{prefix}{i:05}"}}
            ).get("Item")
        )
        unsent = sum(
            1
            for i in range(count)
            if not self.client.query(
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
    bench.writes.clear()  # count the dispatcher's writes, not the rows this bench inserted
    bench.write_items = 0
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
    from dispatcher.local.poller import MappingConfig

    return {
        "rows": rows,
        "delivered": len(values),
        "insert_pace_per_s": pace,
        "p50_s": round(values[len(values) // 2], 3),
        "p95_s": round(values[int(len(values) * 0.95) - 1], 3),
        "batching_window_s": MappingConfig.from_template().batching_window,
    }


@contextmanager
def running_stack(rate: float, latency: float) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(rate, latency, Path(tmp))
        try:
            yield stack
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="provider limit R (req/s)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency (s)")
    parser.add_argument("--rows", type=int, default=100, help="rows per throughput run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    if args.rate <= 0 or args.latency < 0 or args.rows < 2 or args.concurrency < 1:
        parser.error("--rate must be > 0, --latency >= 0, --rows >= 2, --concurrency >= 1")
    r, results = args.rate, {}
    print(
        f"R = {r:g} req/s, latency = {args.latency * 1000:g} ms, {args.rows} rows per run",
        file=sys.stderr,
    )
    with running_stack(r, args.latency) as stack:
        clean = Bench(stack, "clean", rate=r, concurrency=args.concurrency)
        results["no_faults"] = measure_send_rate(stack, clean, "clean-", args.rows)
        writes = sum(clean.writes.values())
        results["writes"] = {
            "requests_per_mail": writes / max(1, results["no_faults"]["mails"]),
            "items_per_mail": clean.write_items / max(1, results["no_faults"]["mails"]),
            "by_operation": clean.writes,
        }

        stack.faults(rate_limited=0.10, server_error=0.02, retry_after=round(1 / r, 3), seed=7)
        faulty = Bench(stack, "faulty", rate=r, concurrency=args.concurrency)
        results["faults"] = measure_send_rate(stack, faulty, "faulty-", args.rows)
        stack.faults(rate_limited=0.0, server_error=0.0)

        naive = Bench(stack, "naive", rate=r, concurrency=1)
        results["sequential"] = measure_send_rate(stack, naive, "naive-", max(20, args.rows // 4))
        results["local_latency"] = local_latency(stack)
        results["memory"] = peak_rss(stack)
    with tempfile.TemporaryDirectory() as tmp:
        results["import"] = import_ratio(function_package(Path(tmp)))

    rows = [
        ("sends/s / R, no faults", results["no_faults"]["rate"] / r, ">= 0.95"),
        ("sends/s / R, 10% 429 + 2% 5xx", results["faults"]["rate"] / r, ">= 0.85"),
        (
            "  lost / duplicates with faults",
            f"{results['faults']['lost']} / {results['faults']['duplicates']}",
            "0 / 0",
        ),
        (
            "speed-up over one record at a time",
            results["no_faults"]["rate"] / results["sequential"]["rate"],
            ">= 8x",
        ),
        ("handler import / import boto3, traced", results["import"]["ratio"], "<= 1.5x"),
        ("  same, Tracing=PassThrough", results["import"]["ratio_untraced"], "<= 1.5x"),
        (
            "  handler import without shipped bytecode / with",
            results["import"]["without_bytecode_ratio"],
            "reported",
        ),
        ("peak RSS, batch of 100 (MB)", results["memory"]["peak_rss_mb"], "<= 100"),
        ("DynamoDB write requests per mail", results["writes"]["requests_per_mail"], "<= 6"),
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
        "measured_at": iso_utc(datetime.now().astimezone()),
    }
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
