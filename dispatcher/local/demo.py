"""The in-process demo: the sample rows through the real handler, no AWS account needed.

DynamoDB is moto's in-memory backend (tables created from ``template.yaml``, with a real
stream), mail goes to the built-in blastengine sandbox on loopback, and the stream is drained
into the real :class:`~dispatcher.dispatch.Dispatcher` the way Lambda would, echoes included,
until nothing is left to process. Then one broken row is fixed, as a person would, and sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dispatcher.local.context import LocalContext
from dispatcher.local.poller import MappingConfig, StreamPoller
from dispatcher.local.sandbox import Faults, Sandbox
from dispatcher.local.tables import HISTORY_TABLE, IDEMPOTENCY_TABLE, SEND_TABLE, create_tables

__all__ = ["EVENTS_DIR", "run_demo"]

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
DEMO_EVENTS = ("insert.json", "mixed-batch.json", "invalid-row.json")
_NAMES = {
    SEND_TABLE: "demo-send",
    HISTORY_TABLE: "demo-history",
    IDEMPOTENCY_TABLE: "demo-idempotency",
}
_LOGIN, _KEY = "demo", "demo-api-key"
FLAKY_ADDRESS = "flaky@example.com"
_FLAKY_ROW = {
    "id": {"S": "invoice-0011"},
    "to": {"S": FLAKY_ADDRESS},
    "subject": {"S": "Your invoice"},
    "text": {"S": "Invoice attached."},
}  # the sandbox's own credentials, not a real account


def run_demo(console: Console | None = None, *, events_dir: Path = EVENTS_DIR) -> dict[str, Any]:
    """Run the demo; returns what it saw (used by the tests)."""
    from moto import mock_aws

    out = console or Console()
    faults = Faults(fail_to=(FLAKY_ADDRESS,))  # the sandbox answers 500 for this one
    with (
        _demo_environment(),
        mock_aws(),
        Sandbox(login_id=_LOGIN, api_key=_KEY, faults=faults) as sandbox,
    ):
        import boto3

        from dispatcher.dispatch import Dispatcher
        from dispatcher.settings import Settings

        client = boto3.client("dynamodb")
        streams = create_tables(client, _NAMES)
        settings = Settings.from_env(
            send_table_name=_NAMES[SEND_TABLE],
            history_table_name=_NAMES[HISTORY_TABLE],
            idempotency_table_name=_NAMES[IDEMPOTENCY_TABLE],
            default_from_email="noreply@example.com",
            default_from_name="Example",
            blastengine_base_url=sandbox.base_url,
            blastengine_login_id=_LOGIN,
            blastengine_api_key=_KEY,
            rate_limit_rps=20.0,
        )
        dispatcher = Dispatcher.from_settings(settings, dynamodb_client=client)
        # Recent botocore sends ARN-addressed stream calls to an account-specific host that
        # moto's in-process mock does not intercept; the classic regional host it does.
        streams_client = boto3.client(
            "dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com"
        )
        poller = _poller(dispatcher, streams_client, streams[SEND_TABLE], out)

        rows = _sample_rows(events_dir)
        out.rule("[bold]1. The application inserts rows into the send table")
        for row in rows:
            client.put_item(TableName=settings.send_table_name, Item=row)
            out.print(f"  put {row['id']['S']:<14} to={_s(row, 'to')!r}")
        _drain(poller)

        out.rule("[bold]2. What the sandbox received")
        _print_mails(out, sandbox)
        out.rule("[bold]3. What stayed in the send table, and why")
        kept = _print_rows(out, client, settings.send_table_name)

        out.rule("[bold]4. A person fixes a failed row; the edit re-sends it")
        fix_id, fixed_to = "order-0008", "rokuro@example.com"
        out.print(f"  update {fix_id}: SET to = {fixed_to!r}")  # noqa: S608 (not SQL)
        client.update_item(
            TableName=settings.send_table_name,
            Key={"id": {"S": fix_id}},
            UpdateExpression="SET #to = :to",
            ExpressionAttributeNames={"#to": "to"},
            ExpressionAttributeValues={":to": {"S": fixed_to}},
        )
        _drain(poller)
        _print_mails(out, sandbox)
        kept = _print_rows(out, client, settings.send_table_name)
        out.print(
            "\nEvery row ends either sent (history item written, row deleted) or kept with "
            "its reason.\nFix a kept row (or bump its `revision`) and it is sent again."
        )
        return {
            "mails": [m.payload for m in sandbox.mails],
            "kept": kept,
        }


@contextlib.contextmanager
def _demo_environment() -> Iterator[None]:
    """Fake AWS credentials and quiet Powertools, restored afterwards."""
    values = {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    saved = {k: os.environ.get(k) for k in [*values, "AWS_ENDPOINT_URL"]}
    os.environ.update(values)
    os.environ.pop("AWS_ENDPOINT_URL", None)  # moto intercepts; never reach a real endpoint
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sample_rows(events_dir: Path) -> list[dict[str, Any]]:
    """The rows the sample events were made from: each INSERT's NewImage, in order."""
    rows: dict[str, dict[str, Any]] = {}
    for name in DEMO_EVENTS:
        event = json.loads((events_dir / name).read_text(encoding="utf-8"))
        for record in event["Records"]:
            if record["eventName"] == "INSERT":
                image = record["dynamodb"]["NewImage"]
                rows.setdefault(image["id"]["S"], image)
    return [*rows.values(), _FLAKY_ROW]


def _poller(dispatcher: Any, client: Any, stream_arn: str, out: Console) -> StreamPoller:
    """The local event source mapping, without its batching window: the demo needs no wait."""
    count = 0

    def invoke(event: dict[str, Any]) -> Any:
        nonlocal count
        count += 1
        with contextlib.redirect_stdout(sys.stderr):
            response = dispatcher.handle_batch(event, LocalContext())
        failures = len(response.get("batchItemFailures", []))
        outcomes = Counter(r.outcome.value for r in dispatcher.last_results)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        out.print(
            f"  invocation {count}: {len(event['Records'])} record(s): {summary}"
            + (f"; {failures} left for retry" if failures else "")
        )
        return response

    config = replace(MappingConfig.from_template(), batching_window=0.0)
    return StreamPoller(client, stream_arn, config, invoke, on_failure=lambda _: None)


def _drain(poller: StreamPoller) -> None:
    """Feed the stream to the handler, batch by batch, until it has nothing new."""
    while poller.poll_once():
        pass


def _print_mails(out: Console, sandbox: Sandbox) -> None:
    table = Table("delivery", "to", "subject", "cc")
    for mail in sandbox.mails:
        p = mail.payload
        table.add_row(
            str(mail.delivery_id), p.get("to", ""), p.get("subject", ""), ", ".join(p.get("cc", []))
        )
    out.print(table)


def _print_rows(out: Console, client: Any, table_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=table_name).get("Items", [])
    for item in sorted(items, key=lambda i: i["id"]["S"]):
        kind = f" ({_s(item, 'error_kind')})" if "error_kind" in item else ""
        until = f" until {_s(item, 'retry_at')}" if "retry_at" in item else ""
        out.print(f"  [bold]{item['id']['S']:<14}[/] {_s(item, 'status')}{kind}{until}")
        for reason in filter(None, _s(item, "last_error").split("; ")):
            out.print(f"      {reason}", markup=False, highlight=False)
    if not items:
        out.print("  (empty)")
    return items


def _s(item: dict[str, Any], name: str) -> str:
    value = item.get(name, {})
    return str(value.get("S", value.get("N", ""))) if isinstance(value, dict) else ""


def show_dev_demo(stack: Any, out: Console, *, events_dir: Path = EVENTS_DIR) -> None:
    """``dispatcher dev --demo``: insert the sample rows into the running stack and show the
    outcome, then how to fix the failed row from a second terminal."""
    import time

    import boto3

    info = stack.info
    client = boto3.client("dynamodb", endpoint_url=info.endpoint_url, region_name=info.region)
    rows = _sample_rows(events_dir)
    for row in rows:
        client.put_item(TableName=info.send_table, Item=row)
    out.rule(f"[bold]demo: {len(rows)} sample rows inserted")
    time.sleep(stack.mapping.batching_window + 0.5)
    stack.wait_idle(timeout=60)
    if stack.sandbox is not None:
        out.rule("[bold]what the sandbox received")
        _print_mails(out, stack.sandbox)
    out.rule("[bold]what stayed in the send table, and why")
    _print_rows(out, client, info.send_table)
    out.print(
        "\nFrom a second terminal (.venv/bin/dispatcher ...):\n"
        "  dispatcher ls                      the rows still waiting, and why\n"
        "  dispatcher show order-0008         one row, its last error, its history\n"
        "  aws dynamodb update-item --endpoint-url " + info.endpoint_url + " \\\n"
        "    --table-name " + info.send_table + ' --key \'{"id":{"S":"order-0008"}}\' \\\n'
        "    --update-expression 'SET #to = :to' --expression-attribute-names "
        '\'{"#to":"to"}\' \\\n'
        '    --expression-attribute-values \'{":to":{"S":"rokuro@example.com"}}\'\n'
        "                                     fix the bad address: the edit re-sends it\n"
        "  dispatcher sandbox                 the mail the sandbox accepted\n"
        "invoice-0011 goes to an address the sandbox always fails: it is deferred, re-fired "
        "by the sweeper, and fails for good after its attempts run out.",
        markup=False,
    )
