"""Commands that run the function here (``demo``, ``invoke``), and what the local stack
keeps (``env``, ``events``, ``sandbox``)."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dispatcher.config.settings import SettingsError
from dispatcher.ops.cli.common import (
    CommandError,
    JsonOption,
    app,
    clip,
    errors_as_exit,
    out,
    read_json,
    target_of,
)


@app.command()
def demo() -> None:
    """Send the sample rows through the real handler against an in-memory DynamoDB and the
    built-in blastengine sandbox, then show what was sent and what stayed (no AWS needed)."""
    with errors_as_exit():
        try:
            from dispatcher.local.demo import run_demo
        except ImportError as exc:
            raise CommandError(
                f"the demo needs the 'local' extra ({exc.name} is missing): "
                "pip install -e '.[local]'"
            ) from exc
        run_demo()


@app.command()
def invoke(
    event_file: Annotated[Path, typer.Argument(help="A DynamoDB stream event (see events/).")],
    seed: Annotated[
        bool,
        typer.Option(
            "--seed",
            help="First put each INSERT/MODIFY record's NewImage into the send table, "
            "so the sample events find their rows.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="The simulated function timeout in seconds.", min=1)
    ] = 120.0,
) -> None:
    """Run the Lambda handler in-process on a stream event file, like `sam local invoke -e`.

    Uses the same environment as the function (SEND_TABLE_NAME, BLASTENGINE_*, ...) and
    boto3's AWS_ENDPOINT_URL; prints the partial batch response as JSON on stdout, logs on
    stderr.
    """
    with errors_as_exit():
        event = read_json(event_file, "event file")
        if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
            raise CommandError(f"event file {event_file} has no 'Records' list: not a stream event")
        # Powertools writes logs and metrics to stdout; stdout is for the response here.
        with contextlib.redirect_stdout(sys.stderr):
            from dispatcher.config.settings import Settings
            from dispatcher.flow.dispatch import Dispatcher
            from dispatcher.functions import dispatch_function
            from dispatcher.local.lambda_service.context import LocalContext
            from dispatcher.ops.admin import Admin

            # Composed as dispatcher.handler composes it, from the same environment.
            try:
                dispatcher = Dispatcher.from_settings(Settings.from_env())
            except SettingsError:
                raise
            except Exception as exc:
                raise CommandError(f"cannot start the handler: {exc}") from exc
            if seed:
                _seed_rows(Admin(dispatcher.store), event)
            function = dispatch_function(dispatcher)
            response = function(event, LocalContext(timeout_seconds=timeout))
    typer.echo(json.dumps(response, indent=2))


# ------------------------------------------------------------------------------ the rows


@app.command()
def env(
    ctx: typer.Context,
    as_json: JsonOption = False,
    shell: Annotated[
        bool,
        typer.Option(
            "--shell",
            help="Print export lines for a POSIX shell: the function's environment against "
            "this stack (AWS_ENDPOINT_URL, the tables, local credentials) and "
            'DISPATCHER_SANDBOX_URL, DISPATCHER_CONSOLE_URL. Use: eval "$(dispatcher env '
            '--shell)".',
        ),
    ] = False,
) -> None:
    """Where the running local stack is: its DynamoDB endpoint, sandbox, console, webhook,
    tables and files (from the state directory's local.json)."""
    with errors_as_exit():
        if as_json and shell:
            raise CommandError("--json and --shell are two ways of printing: choose one")
        from dispatcher.ops.targets import local_state

        info = local_state(ctx.obj.state_dir)
    addresses = _stack_addresses(info)
    if as_json:
        typer.echo(json.dumps({**info, **addresses}, indent=2))
    elif shell:
        exports = {**info.get("env", {}), **{k.upper(): v for k, v in addresses.items()}}
        for name, value in exports.items():
            if value:
                typer.echo(f"export {name}={shlex.quote(str(value))}")
    else:
        lines = {
            "DynamoDB endpoint": info["endpoint_url"],
            "sandbox": addresses["dispatcher_sandbox_url"],
            "console": addresses["dispatcher_console_url"],
            "bounce webhook": info.get("webhook_url"),
            "send table": info.get("send_table"),
            "history table": info.get("history_table"),
            "delivery events": info.get("events_file"),
            "on-failure file": info.get("on_failure_file"),
            "sam local invoke --env-vars": info.get("sam_env_file"),
        }
        for name, value in lines.items():
            out.print(f"{name + ':':29} {value or '-'}", markup=False)


def _stack_addresses(info: dict[str, Any]) -> dict[str, str]:
    """The stack's own pages, as a person or a script reaches them: the sandbox's root (its
    controls under /sandbox, blastengine's API under /api/v1), the console with its token."""
    sandbox = info.get("sandbox_url") or ""
    return {
        "dispatcher_sandbox_url": sandbox.rsplit("/api/", 1)[0] if sandbox else "",
        "dispatcher_console_url": info.get("console_url") or "",
    }


@app.command()
def events(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The delivery events the local stack published on its event bus (what a rule of yours
    on it receives): one line each, or one JSON object per line with --json."""
    import time

    with errors_as_exit():
        name = target_of(ctx).events_file
        if name is None:
            raise CommandError(
                "only the local stack keeps its events; on AWS, subscribe to the stack's "
                "DeliveryEventBusName with a rule (docs/how-to/subscribe-to-events.md)"
            )
    path = Path(name)
    position = 0
    while True:
        if path.exists():
            with path.open(encoding="utf-8") as source:
                source.seek(position)
                for line in source:
                    if not line.endswith("\n"):
                        break  # half written: read it whole next time
                    position += len(line.encode())
                    _print_event(json.loads(line), as_json)
        if not follow:
            return
        time.sleep(0.5)


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(event))
        return
    d = event.get("detail", {})
    parts = [
        str(d.get("at", event.get("time", ""))),
        f"{event.get('detail-type', '?'):<15}",
        str(d.get("row_id", "")),
        str(d.get("recipient", "")),
    ]
    if d.get("delivery_id"):
        parts.append(f"{d.get('provider', '')} #{d['delivery_id']}")
    if d.get("error_kind"):
        parts.append(f"({d['error_kind']})")
    if d.get("retry_at"):
        parts.append(f"until {d['retry_at']}")
    if d.get("reason"):
        parts.append(clip(str(d["reason"]), 80))
    typer.echo("  ".join(parts))


@app.command()
def sandbox(
    ctx: typer.Context,
    headers: Annotated[
        bool, typer.Option("--headers", help="Each mail's header fields, as its request sets them.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What the local sandbox received (the mail it accepted)."""
    import httpx

    with errors_as_exit():
        url = target_of(ctx).sandbox_url
        if url is None:
            raise CommandError("there is no sandbox here: it belongs to the local stack")
        root = url.rsplit("/api/", 1)[0]
        try:
            mails = httpx.get(f"{root}/sandbox/mails", timeout=5).json()["mails"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot read the sandbox at {root}: {exc}") from None
    copies = Counter(_mail_identity(mail["payload"]) for mail in mails)
    duplicates = sum(n - 1 for n in copies.values())
    if as_json:
        typer.echo(json.dumps({"mails": mails, "duplicates": duplicates}))
        return
    if headers:
        _print_headers(mails)
        return
    table = Table("delivery", "received", "to", "subject", "attachments")
    for mail in mails:
        payload = mail["payload"]
        files = ", ".join(
            f"{f['filename']} ({f['size']} B, {f['content_type']})"
            for f in mail.get("attachments", [])
        )
        table.add_row(
            str(mail["delivery_id"]),
            mail["received_at"][:19],
            str(payload.get("to")),
            clip(str(payload.get("subject", "")), 50),
            files,
        )
    out.print(table)
    out.print(
        f"{len(mails)} mail(s); {duplicates} sent more than once (same recipient, subject "
        "and body as an earlier one)",
        markup=False,
    )


def _mail_identity(payload: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(payload.get(name)) for name in ("to", "subject", "text_part", "html_part"))


def _seed_rows(admin: Any, event: dict[str, Any]) -> None:
    for record in event["Records"]:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") in ("INSERT", "MODIFY") and image:
            admin.put_row(image, overwrite=True)


def _print_headers(mails: list[dict[str, Any]]) -> None:
    """Each mail's header fields, as its transaction request sets them."""
    from dispatcher.local.sandbox.headers import header_fields

    for mail in mails:
        out.rule(f"delivery {mail['delivery_id']}")
        for name, value in header_fields(mail["payload"]):
            out.print(f"{name}: {value}", markup=False, highlight=False)
