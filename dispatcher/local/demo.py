"""The demo: the sample rows through the real functions, no AWS account needed.

``dispatcher demo`` starts a local stack of its own (:mod:`dispatcher.local.stack`, the same
one ``dispatcher dev`` runs, on a temporary state directory), inserts the sample rows, shows
what was sent and what stayed, then fixes one broken row as a person would and shows it sent.
``dispatcher dev --demo`` inserts the same rows into the stack it runs and shows the outcome.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from dispatcher.local.sandbox.model import Faults
from dispatcher.local.sandbox.process import SandboxProcess
from dispatcher.model.row import plain, string_attribute
from dispatcher.support.clock import iso_utc

if TYPE_CHECKING:
    from dispatcher.local.stack import LocalStack

__all__ = ["EVENTS_DIR", "run_demo"]

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
DEMO_EVENTS = ("insert.json", "mixed-batch.json", "invalid-row.json")
FLAKY_ADDRESS = "flaky@example.com"
#: An address the sandbox takes mail for, then reports as a hard bounce (``dev --demo``).
BOUNCING_ADDRESS = "nobody@bounce.example"
_BOUNCING_ROW = {
    "id": {"S": "notice-0012"},
    "to": {"S": BOUNCING_ADDRESS},
    "subject": {"S": "Your account notice"},
    "text": {"S": "Your plan renews next week."},
}
#: The demo's template, a row rendered from it, and one whose vars lack a variable it needs
#: (it fails ``template``; adding the variable to its vars sends it).
SHIPPED = {
    "name": "order-shipped",
    "subject": "Order {{ order.id }} has shipped",
    "text": "Hello {{ name }},\n\nyour order {{ order.id }} is on its way: {{ tracking_url }}\n",
    "html": "<p>Hello {{ name }},</p><p>your order <b>{{ order.id }}</b> is on its way: "
    '<a href="{{ tracking_url }}">track it</a>.</p>',
    "example": {
        "name": "Hanako",
        "order": {"id": "A-7"},
        "tracking_url": "https://example.com/t/A-7",
    },
    # as `dispatcher template put` reads them from the parts (a test holds them to it)
    "variables": ("name", "order", "tracking_url"),
    "required": ("name", "order", "tracking_url"),
}
_TEMPLATE_ROWS = [
    {
        "id": {"S": "shipped-0013"},
        "to": {"S": "kyu@example.com"},
        "template": {"S": "order-shipped"},
        "vars": {"M": {"name": {"S": "Kyu"}, "order": {"M": {"id": {"S": "B-13"}}},
                       "tracking_url": {"S": "https://example.com/t/B-13"}}},
    },
    {
        "id": {"S": "shipped-0014"},
        "to": {"S": "ju@example.com"},
        "template": {"S": "order-shipped"},
        "vars": {"M": {"name": {"S": "Ju"}, "order": {"M": {"id": {"S": "B-14"}}}}},
    },
]  # fmt: skip
#: A newsletter: mail of a category, which carries the stack's one-click unsubscribe link.
_NEWSLETTER_ROW = {
    "id": {"S": "news-0015"},
    "to": {"S": "hanako@example.com"},
    "category": {"S": "newsletter"},
    "subject": {"S": "December news"},
    "text": {"S": "What is new this month."},
}
#: Seconds ``dev --demo`` waits for the providers' reports at most.
STATUS_WAIT_SECONDS = 30.0
_FLAKY_ROW = {
    "id": {"S": "invoice-0011"},
    "to": {"S": FLAKY_ADDRESS},
    "subject": {"S": "Your invoice"},
    "text": {"S": "Invoice attached."},
}


def run_demo(console: Console | None = None, *, events_dir: Path = EVENTS_DIR) -> dict[str, Any]:
    """Run the demo on a local stack of its own; returns what it saw (used by the tests)."""
    from dispatcher.local.stack import LocalStack, StackOptions
    from dispatcher.support.observability import logger

    out = console or Console()
    level = logger.log_level
    logger.setLevel("WARNING")  # the demo's tables tell the story; the log lines would drown it
    with (
        _restored_log_level(level),
        tempfile.TemporaryDirectory(prefix="dispatcher-demo-") as state_dir,
        LocalStack(
            StackOptions(
                state_dir=Path(state_dir),
                # the sandbox answers 500 to one address, and reports another as bounced
                sandbox_faults=Faults(
                    fail_to=(FLAKY_ADDRESS,), bounce={BOUNCING_ADDRESS: "HARDERROR"}
                ),
                sweep_interval=3600.0,  # the demo shows the deferral, not the retries
                log_level="WARNING",  # the functions' too
            )
        ) as stack,
    ):
        assert stack.info is not None
        assert stack.sandbox is not None
        client = stack.client("dynamodb")
        table = stack.info.send_table
        out.rule("[bold]1. The application inserts rows into the send table")
        for row in _insert_samples(stack, events_dir):
            out.print(f"  put {row['id']['S']:<14} to={_text(row, 'to')!r}")
        _settle(stack)

        out.rule("[bold]2. What the sandbox received")
        _print_mails(out, stack.sandbox)
        out.rule("[bold]3. What stayed in the send table, and why")
        _print_rows(out, client, table)
        _fix(out, stack, "4. A person fixes a failed row; the edit re-sends it", "order-0008",
             "SET #to = :to", {"#to": "to"}, {":to": {"S": "rokuro@example.com"}})  # fmt: skip
        _print_mails(out, stack.sandbox)
        kept = _fix(out, stack, "5. A row failed on its template; its vars fixed, it is sent",
                    "shipped-0014", "SET #v.#t = :t", {"#v": "vars", "#t": "tracking_url"},
                    {":t": {"S": "https://example.com/t/B-14"}})  # fmt: skip
        out.print(
            "\nEvery row ends either sent (history item written, row deleted) or kept with "
            "its reason.\nFix a kept row (or bump its `revision`) and it is sent again."
        )
        return {"mails": [m.payload for m in stack.sandbox.mails], "kept": kept}


def _fix(
    out: Console,
    stack: LocalStack,
    title: str,
    row_id: str,
    expression: str,
    names: dict[str, str],
    values: dict[str, Any],
) -> list[dict[str, Any]]:
    """A person's edit of a failed row, which puts it back on the stream; what stays after."""
    assert stack.info is not None
    client = stack.client("dynamodb")
    out.rule(f"[bold]{title}")
    shown = expression
    for name, attribute in names.items():
        shown = shown.replace(name, attribute)
    for placeholder, value in values.items():
        shown = shown.replace(placeholder, repr(value["S"]))
    out.print(f"  update {row_id}: {shown}", markup=False)
    client.update_item(
        TableName=stack.info.send_table,
        Key={"id": {"S": row_id}},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
    _settle(stack)
    return _print_rows(out, client, stack.info.send_table)


@contextlib.contextmanager
def _restored_log_level(level: int) -> Iterator[None]:
    from dispatcher.support.observability import logger

    try:
        yield
    finally:
        logger.setLevel(level)


def _insert_samples(stack: LocalStack, events_dir: Path) -> list[dict[str, Any]]:
    """Save the demo's template, then put the sample rows into the stack's send table, as an
    application would."""
    from dispatcher.templates.library import TemplateLibrary
    from dispatcher.templates.version import TemplateVersion

    assert stack.info is not None
    client = stack.client("dynamodb")
    library = TemplateLibrary(table=stack.info.templates_table, boto3_client=client)
    if library.current(str(SHIPPED["name"])) is None:
        library.save(TemplateVersion(version=0, **SHIPPED), expected=None, by="demo")  # type: ignore[arg-type]
    rows = _sample_rows(events_dir)
    for row in rows:
        client.put_item(TableName=stack.info.send_table, Item=row)
    return rows


def _settle(stack: LocalStack) -> None:
    """Wait for the batching window, then until every record and its echo is handled."""
    assert stack.mapping is not None
    time.sleep(stack.mapping.batching_window + 0.5)
    stack.wait_idle(timeout=60)


def _sample_rows(events_dir: Path) -> list[dict[str, Any]]:
    """The rows the sample events were made from: each INSERT's NewImage, in order.

    A valid ``send_after`` is moved to a week from now, so the scheduled sample stays
    scheduled however long after the events were written the demo runs.
    """
    rows: dict[str, dict[str, Any]] = {}
    week_ahead = iso_utc(datetime.now(UTC) + timedelta(days=7))
    for name in DEMO_EVENTS:
        event = json.loads((events_dir / name).read_text(encoding="utf-8"))
        for record in event["Records"]:
            if record["eventName"] == "INSERT":
                image = dict(record["dynamodb"]["NewImage"])
                if _is_iso(string_attribute(image, "send_after")):
                    image["send_after"] = {"S": week_ahead}
                rows.setdefault(image["id"]["S"], image)
    return [*rows.values(), _FLAKY_ROW, _BOUNCING_ROW, *_TEMPLATE_ROWS, _NEWSLETTER_ROW]


def _is_iso(value: str | None) -> bool:
    try:
        return value is not None and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _print_mails(out: Console, sandbox: SandboxProcess) -> None:
    table = Table("delivery", "to", "subject", "cc", "unsubscribe")
    links = []
    for mail in sandbox.mails:
        p = mail.payload
        link = p.get("list_unsubscribe", {}).get("url", "")
        table.add_row(
            str(mail.delivery_id), p.get("to", ""), p.get("subject", ""),
            ", ".join(p.get("cc", [])), "one-click" if link else "",
        )  # fmt: skip
        if link:
            links.append((p.get("subject", ""), link))
    out.print(table)
    for subject, link in links:
        out.print(
            f"  {subject!r} carries List-Unsubscribe: <{link}>", markup=False, highlight=False
        )


def _print_rows(out: Console, client: Any, table_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=table_name).get("Items", [])
    for item in sorted(items, key=lambda i: i["id"]["S"]):
        kind = f" ({_text(item, 'error_kind')})" if "error_kind" in item else ""
        until = f" until {_text(item, 'retry_at')}" if "retry_at" in item else ""
        out.print(f"  [bold]{item['id']['S']:<14}[/] {_text(item, 'status')}{kind}{until}")
        for reason in filter(None, _text(item, "last_error").split("; ")):
            out.print(f"      {reason}", markup=False, highlight=False)
    if not items:
        out.print("  (empty)")
    return items


def _print_statuses(out: Console, client: Any, table_name: str) -> None:
    """Each sent mail's delivery status, once every one has moved on from ``accepted`` (the
    sweeper asks the sandbox's mail log every run; bounces come by webhook) or the wait ends."""
    deadline = time.monotonic() + STATUS_WAIT_SECONDS
    while True:
        items = client.scan(TableName=table_name).get("Items", [])
        waiting = [i for i in items if _text(i, "delivery_status") == "accepted"]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for item in sorted(items, key=lambda i: i["id"]["S"]):
        status = _text(item, "delivery_status")
        colour = {"delivered": "green", "accepted": "yellow"}.get(status, "red")
        out.print(
            f"  [bold]{item['id']['S']:<14}[/] [{colour}]{status:<10}[/] "
            f"{_text(item, 'to'):<24} {_text(item, 'delivery_detail')}",
            highlight=False,
        )
    if waiting:
        out.print(f"  ({len(waiting)} not reported yet: the next sweeps ask again)")


def _text(item: dict[str, Any], name: str) -> str:
    value = plain(item).get(name, "")
    return str(value)


def show_dev_demo(
    stack: LocalStack,
    out: Console,
    *,
    events_dir: Path = EVENTS_DIR,
    console_url: str | None = None,
) -> None:
    """``dispatcher dev --demo``: insert the sample rows into the running stack and show the
    outcome, then how to fix the failed row in the console or from a second terminal."""
    info = stack.info
    assert info is not None
    client = stack.client("dynamodb")
    rows = _insert_samples(stack, events_dir)
    out.rule(f"[bold]demo: {len(rows)} sample rows inserted")
    _settle(stack)
    if stack.sandbox is not None:
        out.rule("[bold]what the sandbox received")
        _print_mails(out, stack.sandbox)
    out.rule("[bold]what stayed in the send table, and why")
    _print_rows(out, client, info.send_table)
    out.rule("[bold]after acceptance: what the provider reported")
    _print_statuses(out, client, info.history_table)
    if console_url:
        out.print(
            f"\nIn a browser: {console_url}\n"
            "  Failed -> order-0008 -> Fix and re-send: correct the address, save, and the "
            "row is sent.\n"
            "  Failed -> shipped-0014: its vars lack tracking_url, which the template "
            "order-shipped needs;\n    add it in Fix and re-send, or see Templates -> "
            "order-shipped.",
            markup=False,
        )
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
        f"  dispatcher history --to {BOUNCING_ADDRESS}\n"
        "                                     every mail to one address, and what became of it\n"
        "  dispatcher template preview order-shipped\n"
        "                                     the demo's template, rendered with its example\n"
        "invoice-0011 goes to an address the sandbox always fails: it is deferred, re-fired "
        "by the sweeper, and fails for good after its attempts run out.",
        markup=False,
    )
