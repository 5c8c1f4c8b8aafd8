"""Throughput figures: sends per second against the provider's limit R, one process, shared
across invocations and shards, end to end through the stack, and insert-to-history latency.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    Bench,
    Stack,
    endpoint_cpu_seconds,
    endpoint_operations,
    function_cpu_seconds,
    local_dynamodb,
    per_mail_by_operation,
    requests_served,
    running_stack,
)
from dispatcher.config.settings import Settings
from dispatcher.local.dynamodb.tables import create_tables
from dispatcher.local.lambda_service.mapping import MappingConfig


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
    operations_before = endpoint_operations(stack)
    answered_before = stack.stats()
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
    operations_after = endpoint_operations(stack)
    requests = requests_served(operations_after) - requests_served(operations_before)
    operations = per_mail_by_operation(operations_before, operations_after, len(mails))
    answered = stack.stats()
    sandbox_requests = answered["requests"] - answered_before["requests"]
    refused = answered["over_limit"] - answered_before["over_limit"]
    return {
        "endpoint_requests_per_mail": round(requests / max(1, len(mails)), 2),
        "function_cpu_ms_per_mail": round(cpu / max(1, len(mails)) * 1000, 2),
        "endpoint_cpu_ms_per_mail": round(endpoint_cpu / max(1, len(mails)) * 1000, 2),
        "endpoint_by_operation": operations,
        "rows": rows,
        "mails": len(mails),
        "insert_seconds": round(inserted, 2),
        "first_mail_after_s": round(first - started, 3),
        "seconds": round(last - started, 2),
        # from the first insert, and as the provider counts it: first acceptance to last
        "ratio": len(mails) / (last - started) / rate,
        "acceptance_ratio": (len(mails) - 1) / max(1e-9, last - first) / rate,
        "share_429": refused / max(1, sandbox_requests),
        "answers_429": refused,
    }


#: The stream mapping's ParallelizationFactor in template.yaml: environments per shard.
LANES_PER_SHARD = MappingConfig.from_template().parallelization_factor

#: SEND_CONCURRENCY as shipped: the window runs measure the pacing as deployed.
DEFAULT_CONCURRENCY = str(Settings.send_concurrency)


def window_shapes(
    rates: tuple[float, ...], latency: float, rows: int, shard_counts: tuple[int, ...] = (1, 4)
) -> list[dict]:
    """End to end through the stack against each shape of the provider's limit (the sandbox's
    ``--sandbox-window``: blastengine's fixed one-second windows, a gateway's token bucket),
    at each rate with one shard and, at the lowest, with each of ``shard_counts`` sharing
    the limit (`dispatcher dev --shards N`, environments warm): rows/s over R from the first
    insert and from the first acceptance (as the provider counts), and the 429 share."""
    out = []
    runs = [(rate, 1) for rate in rates] + [(rates[0], n) for n in shard_counts if n != 1]
    runs.sort()
    for shape in ("fixed", "bucket"):
        for rate, shards in runs:
            args = ("--sandbox-window", shape, "--shards", str(shards))
            print(f"  {shape} window, R = {rate:g}, {shards} shard(s)", file=sys.stderr)
            with running_stack(
                rate, latency, args, {"SEND_CONCURRENCY": DEFAULT_CONCURRENCY}
            ) as stack:
                # A cold start for every lane (shards times the mapping's parallelization factor,
                # each its own environment, chosen by the row's key): ten rows a lane leave
                # none cold (four rows a shard left some lane cold in most runs).
                end_to_end(stack, rate, 10 * LANES_PER_SHARD * shards, prefix="warm-")
                run = end_to_end(stack, rate, rows, prefix="shapes-")
            out.append({"window": shape, "rate": rate, "shards": shards, **run})
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
    from dispatcher.local.lambda_service.mapping import MappingConfig

    return {
        "rows": rows,
        "delivered": len(values),
        "insert_pace_per_s": pace,
        "p50_s": round(values[len(values) // 2], 3),
        "p95_s": round(values[int(len(values) * 0.95) - 1], 3),
        "batching_window_s": MappingConfig.from_template().batching_window,
    }
