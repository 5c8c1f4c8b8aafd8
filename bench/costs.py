"""What a mail costs (AWS prices, requests per mail), how fast the package imports cold, and
the handler's peak memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from bench.harness import ROOT, Bench, Stack

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


def after_acceptance(stack: Stack, rate: float, rows: int = 200) -> dict[str, Any]:
    """What a mail's life after acceptance adds, per mail: the sweeper's poll of the mail log
    over a batch just sent (its look-up requests, and the DynamoDB reads and status writes
    that move each item to ``delivered``), then the same window read again, as the next
    sweeps read it, in the same container (it remembers what it applied)."""
    from dispatcher.local.sandbox.model import DEFAULT_LOOKUP_LAG
    from dispatcher.notify.delivery_events import EventPublisher
    from dispatcher.providers.blastengine.client import BlastengineClient
    from dispatcher.providers.blastengine.credentials import credentials_loader
    from dispatcher.support.clock import SYSTEM_CLOCK
    from dispatcher.tracking.book import StatusBook
    from dispatcher.tracking.mail_log import LOOKBACK, PAGE_SIZE, MailLogPoller

    bench = Bench(stack, "status", rate=rate, concurrency=16)
    started = SYSTEM_CLOCK.now() - timedelta(seconds=1)
    with contextlib.redirect_stdout(io.StringIO()):  # the metrics Powertools prints per 100
        bench.handle(bench.records("status-", rows))
    time.sleep(DEFAULT_LOOKUP_LAG + 0.5)  # the sandbox's mail log lags what it took
    events = EventPublisher(bench.events_client, bench.settings.event_bus_name or "default")
    poller = MailLogPoller(
        provider=BlastengineClient(
            base_url=bench.settings.blastengine_base_url,
            credentials=credentials_loader(bench.settings),
        ),
        book=StatusBook(
            history_table=bench.names["HistoryTable"], boto3_client=bench.client, events=events
        ),
        pages=rows // PAGE_SIZE + 1,
        # the window starts at this batch: the sandbox also holds earlier runs' mail
        clock=_At(started + LOOKBACK),
    )
    out: dict[str, Any] = {"rows": rows}
    for run in ("first", "again"):
        bench.reset_counts()
        events.published = 0
        with contextlib.redirect_stdout(io.StringIO()):
            polled = poller.poll()
        out[run] = {
            "lookup_requests_per_mail": polled.requests / rows,
            "moved": polled.moved,
            "write_units_per_mail": bench.write_units / rows,
            "read_units_per_mail": bench.read_units / rows,
            "events_per_mail": events.published / rows,
        }
    first = out["first"]
    out["usd_per_100k"] = 100_000 * (
        first["write_units_per_mail"] * PRICES["dynamodb_write_request_unit_usd"]
        + first["read_units_per_mail"] * PRICES["dynamodb_read_request_unit_usd"]
        + first["events_per_mail"] * PRICES["eventbridge_custom_event_usd"]
    )
    return out


#: A typical template: an order confirmation with a loop over its lines, in text and HTML.
TYPICAL_TEMPLATE = {
    "name": "order",
    "subject": "Order {{ order.id }} confirmed",
    "text": (
        "Hello {{ name }},\n\nthank you for your order {{ order.id }}:\n"
        "{% for line in order.lines %}- {{ line.title }} x{{ line.qty }}: "
        "{{ '%.2f' % line.price }}\n{% endfor %}\nTotal {{ '%.2f' % order.total }}\n"
    ),
    "html": (
        "<h1>Thank you, {{ name }}</h1><table>{% for line in order.lines %}<tr>"
        "<td>{{ line.title }}</td><td>{{ line.qty }}</td><td>{{ '%.2f' % line.price }}</td>"
        "</tr>{% endfor %}</table><p>Total <b>{{ '%.2f' % order.total }}</b></p>"
    ),
}
TYPICAL_VARS = {
    "name": "Hanako",
    "order": {
        "id": "A-7",
        "total": Decimal("42.50"),
        "lines": [
            {"title": f"Item {n}", "qty": Decimal(n), "price": Decimal("8.50")} for n in range(1, 6)
        ],
    },
}


def template_cost(stack: Stack, rate: float, rows: int = 200) -> dict[str, Any]:
    """What a template row adds: the render's CPU per mail (the same template rendered again
    and again, as a warm function does), and a batch of template rows against a batch of
    plain ones: function CPU and DynamoDB reads per mail, side by side."""
    from dispatcher.ops.templates import save_template
    from dispatcher.templates.library import TemplateLibrary
    from dispatcher.templates.render import render
    from dispatcher.templates.version import TemplateVersion

    version = TemplateVersion(version=1, **TYPICAL_TEMPLATE)  # type: ignore[arg-type]
    render(version, TYPICAL_VARS)  # compiled once, as a warm function has it
    runs = 2000
    started = time.process_time()
    for _ in range(runs):
        render(version, TYPICAL_VARS)
    render_ms = (time.process_time() - started) / runs * 1000
    bench = Bench(stack, "templates", rate=rate, concurrency=16)
    save_template(
        TemplateLibrary(table=bench.names["TemplatesTable"], boto3_client=bench.stack.client),
        TemplateVersion(version=0, **TYPICAL_TEMPLATE),  # type: ignore[arg-type]
    )
    serializer = TypeSerializer()
    template_row = {"template": {"S": "order"}, "vars": serializer.serialize(TYPICAL_VARS)}
    out: dict[str, Any] = {"render_cpu_ms_per_mail": round(render_ms, 3), "rows": rows}
    for kind, template in (("plain", None), ("template", template_row)):
        records = bench.records(f"{kind}-", rows, template=template)
        bench.reset_counts()
        started = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            bench.handle(records)
        out[kind] = {
            "cpu_ms_per_mail": round((time.process_time() - started) / rows * 1000, 3),
            "read_requests_per_mail": sum(bench.reads.values()) / rows,
            "get_item_per_mail": bench.reads.get("GetItem", 0) / rows,
        }
    out["cpu_ratio"] = round(
        out["template"]["cpu_ms_per_mail"] / out["plain"]["cpu_ms_per_mail"], 3
    )
    out["added_reads_per_mail"] = round(
        out["template"]["read_requests_per_mail"] - out["plain"]["read_requests_per_mail"], 4
    )
    return out


def category_cost(stack: Stack, rate: float, rows: int = 200) -> dict[str, Any]:
    """What a category adds per mail, side by side: 200 transactional rows against 200
    newsletter rows (each also looked up for its category's suppression, and carrying a
    signed unsubscribe link): read requests and read units per mail; and the guard's read
    of every category's standing, once per batch."""
    bench = Bench(stack, "categories", rate=rate, concurrency=16)
    out: dict[str, Any] = {"rows": rows}
    for kind, extra in (("transactional", None), ("newsletter", {"category": {"S": "newsletter"},
                        "subject": {"S": "news"}, "text": {"S": "news"}})):  # fmt: skip
        records = bench.records(f"{kind}-", rows, template=extra)
        bench.reset_counts()
        with contextlib.redirect_stdout(io.StringIO()):
            bench.handle(records)
        out[kind] = {
            "read_requests_per_mail": sum(bench.reads.values()) / rows,
            "read_units_per_mail": bench.read_units / rows,
            "batch_get_per_mail": bench.reads.get("BatchGetItem", 0) / rows,
        }
    out["added_read_requests_per_mail"] = round(
        out["newsletter"]["read_requests_per_mail"]
        - out["transactional"]["read_requests_per_mail"],
        4,
    )
    out["added_read_units_per_mail"] = round(
        out["newsletter"]["read_units_per_mail"] - out["transactional"]["read_units_per_mail"], 4
    )
    return out


class _At:
    """A clock stopped at one moment (the poll's window is read back from it)."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment

    def now(self) -> datetime:
        return self._moment

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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
from bench.harness import Bench, local_dynamodb
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
