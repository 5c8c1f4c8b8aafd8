"""The ``dispatcher`` command line. Commands are thin: they compose the package's parts.

Every command but ``dev``, ``demo`` and ``invoke`` talks to a stack: the local one that
``dispatcher dev`` is running (the default) or a deployed one (``--stack NAME``). Data goes to
stdout (a table, or JSON with ``--json``); messages go to stderr. A domain error (a bad
argument, an unknown id, an unreachable endpoint) is one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dispatcher.clock import parse_iso
from dispatcher.row import ErrorKind, plain
from dispatcher.settings import SettingsError
from dispatcher.unsettled import describe_unsettled


class _Provider(StrEnum):
    BLASTENGINE = "blastengine"
    SES = "ses"


app = typer.Typer(
    help="A visible queue for outgoing mail: DynamoDB rows in, blastengine deliveries out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LiveOption = Annotated[
    bool,
    typer.Option(
        "--live",
        help="Also ask blastengine (GET /deliveries/ID) how each sent mail's delivery stands.",
    ),
]


class CommandError(Exception):
    """A failure to report as one line and exit status 2."""


@dataclass
class _Factory:
    """Builds what commands need, once, from the global options (chalice's CLIFactory)."""

    stack: str | None
    state_dir: Path
    _target: Any = None

    def target(self) -> Any:
        if self._target is None:
            from dispatcher.targets import deployed_stack, local_stack

            self._target = deployed_stack(self.stack) if self.stack else local_stack(self.state_dir)
        return self._target


@app.callback()
def _options(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack",
            envvar="DISPATCHER_STACK",
            help="A deployed stack's name; default: the local stack `dispatcher dev` runs.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            envvar="DISPATCHER_STATE_DIR",
            help="Where `dispatcher dev` keeps local.json (default: ./.dispatcher).",
        ),
    ] = None,
) -> None:
    """A visible queue for outgoing mail: DynamoDB rows in, blastengine deliveries out."""
    from dispatcher.targets import default_state_dir

    ctx.obj = _Factory(stack, state_dir or default_state_dir())


# ----------------------------------------------------------------------------- the stack


@app.command()
def dev(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option(help="DynamoDB endpoint port (0: a free one).", min=0, max=65535)
    ] = 0,
    provider_url: Annotated[
        str | None,
        typer.Option(
            help="Send to this blastengine-compatible API instead of the built-in sandbox "
            "(credentials from BLASTENGINE_LOGIN_ID / BLASTENGINE_API_KEY)."
        ),
    ] = None,
    mail_provider: Annotated[
        _Provider | None,
        typer.Option(
            help="MAIL_PROVIDER for the functions: blastengine (the sandbox) or ses (moto's "
            "SES on the stack's endpoint). Default: the environment's, else blastengine.",
        ),
    ] = None,
    failover_provider: Annotated[
        _Provider | None,
        typer.Option(help="FAILOVER_PROVIDER for the functions (docs/concepts/providers.md)."),
    ] = None,
    sam_host: Annotated[
        str,
        typer.Option(
            help="The stack's address from SAM's Lambda container, written into the "
            "--env-vars file for `sam local invoke` (Linux: 127.0.0.1 with "
            "--docker-network host)."
        ),
    ] = "host.docker.internal",
    sandbox_fail: Annotated[
        float, typer.Option(help="Share of sandbox requests answered 500.", min=0, max=1)
    ] = 0.0,
    sandbox_429: Annotated[
        float,
        typer.Option("--sandbox-429", help="Share of sandbox requests answered 429.", min=0, max=1),
    ] = 0.0,
    sandbox_rps: Annotated[
        float,
        typer.Option(help="Sandbox rate limit in requests/second (429 above it; 0: none).", min=0),
    ] = 0.0,
    sandbox_latency: Annotated[
        float, typer.Option(help="Seconds the sandbox takes to answer.", min=0)
    ] = 0.0,
    sandbox_accept_then_hang: Annotated[
        float,
        typer.Option(
            help="Share of sandbox requests whose mail is accepted but answered only after "
            "the function's request timeout (the dispatcher must look it up, not resend).",
            min=0,
            max=1,
        ),
    ] = 0.0,
    sandbox_hang: Annotated[
        float,
        typer.Option(
            help="Share of sandbox requests that hang past the request timeout without the "
            "mail being accepted.",
            min=0,
            max=1,
        ),
    ] = 0.0,
    sandbox_lookup_lag: Annotated[
        float | None,
        typer.Option(
            help="Seconds before an accepted mail shows in the sandbox's look-ups (default "
            '1); the function waits this plus 2 s before trusting a "not found".',
            min=0,
        ),
    ] = None,
    sandbox_bounce: Annotated[
        list[str] | None,
        typer.Option(
            help="ADDRESS=TYPE or @DOMAIN=TYPE (HARDERROR, SOFTERROR, DROP): the sandbox "
            "accepts such mail, then reports the bounce to the webhook (repeatable)."
        ),
    ] = None,
    sweep_interval: Annotated[
        float, typer.Option(help="Seconds between sweeper runs.", min=0.1)
    ] = 10.0,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Insert sample rows (one invalid, one the sandbox fails) and show "
            "what happened to them (from empty tables, as with --fresh).",
        ),
    ] = False,
    crash_rate: Annotated[
        float,
        typer.Option(
            help="Chaos: share of invocations that crash after the handler ran, so their "
            "batch is redelivered.",
            min=0,
            max=1,
        ),
    ] = 0.0,
    kill_rate: Annotated[
        float,
        typer.Option(
            help="Chaos: share of invocations whose process is killed (SIGKILL) mid-batch, at "
            "a kill point: idempotency record in progress, mail accepted, transaction "
            "committed, failure being stamped. The function then runs in a process of its own.",
            min=0,
            max=1,
        ),
    ] = 0.0,
    dynamodb_fault_rate: Annotated[
        float,
        typer.Option(
            "--dynamodb-fault-rate",
            help="Chaos: share of the function's DynamoDB calls that fail as throttled or "
            "conflicting.",
            min=0,
            max=1,
        ),
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for the injected faults.")] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start with empty tables, discarding the rows and history the state "
            "directory kept from the last run.",
        ),
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="json (one JSON line per record, as in Lambda) or human (one short line per "
            "event, idle sweeps left out); default: human when stderr is a terminal."
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(
            help="Run the send table's stream as N shards (a table with N partitions): N "
            "concurrent invocations, all under the one account limit (RATE_LIMIT_RPS).",
            min=1,
            max=64,
        ),
    ] = 1,
    parallelization_factor: Annotated[
        int | None,
        typer.Option(
            help="Concurrent batches per shard instead of the template's "
            "StreamParallelizationFactor.",
            min=1,
            max=10,
        ),
    ] = None,
    batching_window: Annotated[
        float | None,
        typer.Option(
            help="Seconds a batch may wait to fill instead of the template's "
            "StreamBatchingWindowSeconds.",
            min=0,
            max=300,
        ),
    ] = None,
    console: Annotated[
        bool,
        typer.Option(
            "--console/--no-console",
            help="Serve the web console on 127.0.0.1 (its URL, with its token, is the ready "
            'line\'s "console_url").',
        ),
    ] = True,
    console_port: Annotated[
        int, typer.Option(help="The console's port (0: a free one).", min=0, max=65535)
    ] = 0,
    persist: Annotated[
        bool,
        typer.Option(
            "--persist/--no-persist",
            help="Keep the tables in the state directory across restarts (--no-persist: in "
            "memory only, for throwaway runs and load tests).",
        ),
    ] = True,
) -> None:
    """Start the local stack in the foreground: DynamoDB with streams, the sandbox, the
    stream poller and the sweeper. Prints one JSON "ready" line on stdout, then logs on
    stderr; Ctrl-C (or SIGTERM) stops everything."""
    # Everything after the ready line goes to stderr, Powertools' logger included: it binds
    # the stream current when it is created, which may have been before this command ran
    # (any module importing it), so its handler is pointed at stderr explicitly.
    if log_format not in (None, "json", "human"):
        _fail(f"--log-format must be json or human, not {log_format!r}")
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    import logging

    from dispatcher.observability import logger as function_logger

    handler = function_logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    from dispatcher.local.sandbox import Faults
    from dispatcher.local.stack import LocalStack, StackOptions

    log_format = log_format or ("human" if sys.stderr.isatty() else "json")
    colour = err.is_terminal and not err.no_color
    if log_format == "human":
        from dispatcher.local.terminal import use_human_logs
        from dispatcher.observability import logger

        use_human_logs(logger, colour=colour)

    bounces: dict[str, str] = {}
    for rule in sandbox_bounce or []:
        where, _, kind = rule.partition("=")
        if not where or kind not in ("HARDERROR", "SOFTERROR", "DROP"):
            _fail(f"--sandbox-bounce wants ADDRESS=TYPE (HARDERROR, SOFTERROR, DROP), got {rule!r}")
        bounces[where.lower()] = kind
    faults = Faults(
        bounce=bounces,
        server_error=sandbox_fail,
        rate_limited=sandbox_429,
        rate_limit=sandbox_rps,
        latency=sandbox_latency,
        accepted_timeout=sandbox_accept_then_hang,
        timeout=sandbox_hang,
        fail_to=("flaky@example.com",) if demo else (),
        seed=seed,
    )
    if sandbox_lookup_lag is not None:
        faults = replace(faults, lookup_lag=sandbox_lookup_lag)
    options = StackOptions(
        port=port,
        provider_url=provider_url,
        sandbox_faults=faults,
        sweep_interval=sweep_interval,
        state_dir=ctx.obj.state_dir,
        crash_rate=crash_rate,
        kill_rate=kill_rate,
        dynamodb_fault_rate=dynamodb_fault_rate,
        seed=seed,
        fresh=fresh or demo,  # the demo's story starts from empty tables
        persist=persist,
        shards=shards,
        log_format=log_format,
        log_colour=colour,
        sam_host=sam_host,
        mail_provider=mail_provider.value if mail_provider else None,
        failover_provider=failover_provider.value if failover_provider else None,
        mapping_overrides={
            name: value
            for name, value in (
                ("parallelization_factor", parallelization_factor),
                ("batching_window", batching_window),
            )
            if value is not None
        },
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = LocalStack(options)
    web: Any = None
    with _errors_as_exit():
        try:
            info = stack.start()
            if console:
                from dispatcher.targets import local_stack

                web = _serve_console(
                    local_stack(ctx.obj.state_dir),  # from the local.json just written
                    port=console_port,
                    sender=stack.function_env["DEFAULT_FROM_EMAIL"],
                )
                info = replace(info, console_url=web.url)
            print(info.ready_line(), file=real_stdout, flush=True)
            err.print(
                f"local stack up: DynamoDB at {info.endpoint_url}, mail to "
                f"{info.provider_url}. Ctrl-C stops it."
            )
            if web is not None:
                err.print(f"console: {web.url}", markup=False)
            if demo:
                from dispatcher.local.demo import show_dev_demo

                show_dev_demo(stack, err, console_url=web.url if web else None)
            while not stop.wait(0.5):  # wake now and then: signal handlers run between waits
                if stack.failure is not None:
                    raise CommandError(f"the local stack stopped: {stack.failure}")
        except OSError as exc:
            raise CommandError(f"cannot start the local stack: {exc}") from None
        finally:
            err.print("stopping the local stack")
            if web is not None:
                web.stop()
            stack.stop()
            sys.stdout = real_stdout


def _serve_console(target: Any, *, host: str = "127.0.0.1", port: int, sender: str) -> Any:
    """The web console over ``target``'s tables, started (``sender``: the default from
    address the edit form's checks assume, as the function's)."""
    from dispatcher.console import ConsoleServer

    return ConsoleServer(
        target.admin,
        host=host,
        port=port,
        default_from_email=sender,
        target=target.name,
        staging=target.staging,
    ).start()


@app.command("console")
def console_command(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Loopback by default: anything else lets other "
            "machines reach it (the token still guards it, over plain HTTP)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one).", min=0, max=65535)] = 0,
) -> None:
    """Serve the web console for the stack (the local one, or --stack NAME with your own AWS
    credentials) until Ctrl-C. Prints the URL to open: it carries the console's token."""
    with _errors_as_exit():
        target = _target(ctx)
        try:
            web = _serve_console(
                target,
                host=host,
                port=port,
                sender=os.environ.get("DEFAULT_FROM_EMAIL") or "noreply@example.com",
            )
        except OSError as exc:
            raise CommandError(f"cannot serve the console on {host}:{port}: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    typer.echo(web.url)
    err.print(f"console for {target.name}; Ctrl-C stops it", markup=False)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        web.stop()


@app.command()
def demo() -> None:
    """Send the sample rows through the real handler against an in-memory DynamoDB and the
    built-in blastengine sandbox, then show what was sent and what stayed (no AWS needed)."""
    with _errors_as_exit():
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
    with _errors_as_exit():
        event = _read_json(event_file, "event file")
        if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
            raise CommandError(f"event file {event_file} has no 'Records' list: not a stream event")
        # Powertools writes logs and metrics to stdout; stdout is for the response here.
        with contextlib.redirect_stdout(sys.stderr):
            from dispatcher.admin import Admin
            from dispatcher.dispatch import Dispatcher
            from dispatcher.functions import dispatch_function
            from dispatcher.local.context import LocalContext
            from dispatcher.settings import Settings

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
def send(
    ctx: typer.Context,
    to: Annotated[str | None, typer.Option(help="Recipient address.")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject line.")] = None,
    text: Annotated[str | None, typer.Option(help="Plain-text body.")] = None,
    html: Annotated[str | None, typer.Option(help="HTML body.")] = None,
    row_id: Annotated[str | None, typer.Option("--id", help="Row id (default: a UUID).")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Sender address.")] = None,
    from_name: Annotated[str | None, typer.Option(help="Sender name.")] = None,
    cc: Annotated[list[str] | None, typer.Option(help="Cc address (repeatable).")] = None,
    bcc: Annotated[list[str] | None, typer.Option(help="Bcc address (repeatable).")] = None,
    encode: Annotated[str | None, typer.Option(help="UTF-8 or ISO-2022-JP.")] = None,
    insert_code: Annotated[
        list[str] | None,
        typer.Option(help="Personalisation KEY=VALUE, filling __KEY__ (repeatable)."),
    ] = None,
    send_after: Annotated[
        str | None, typer.Option(help="ISO-8601 time with offset; not sent before then.")
    ] = None,
    reply_to: Annotated[str | None, typer.Option(help="Reply-To address.")] = None,
    unsubscribe_url: Annotated[
        str | None, typer.Option(help="List-Unsubscribe URL (http or https).")
    ] = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option(
            help="A file to attach (repeatable): uploaded to the stack's attachments bucket "
            "under ID/NAME and named in the row."
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="A JSON object with the row's attributes.")
    ] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Many rows: one JSON object per line.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Insert rows into the send table, as an application would. Each row is checked first;
    nothing is inserted if any row is malformed."""
    with _errors_as_exit():
        if jsonl is not None:
            rows = _read_jsonl(jsonl)
        elif file is not None:
            rows = [_read_json(file, "row file")]
        else:
            codes = dict(_key_value(item) for item in insert_code or [])
            rows = [
                {
                    k: v
                    for k, v in {
                        "id": row_id,
                        "to": to,
                        "subject": subject,
                        "text": text,
                        "html": html,
                        "from": sender,
                        "from_name": from_name,
                        "cc": cc or None,
                        "bcc": bcc or None,
                        "encode": encode,
                        "insert_code": codes or None,
                        "send_after": send_after,
                        "reply_to": reply_to,
                        "list_unsubscribe_url": unsubscribe_url,
                    }.items()
                    if v is not None
                }
            ]
        if attach:
            if len(rows) != 1:
                raise CommandError("--attach goes with a single row, not --file/--jsonl")
            rows[0] = _attach(ctx, {"id": str(uuid.uuid4()), **rows[0]}, attach)
        items = [
            _checked_item(row, label=f"row {n}" if len(rows) > 1 else "the row")
            for n, row in enumerate(rows, 1)
        ]
        admin = _target(ctx).admin
        inserted = []
        progress: Iterable[dict[str, Any]] = items
        if len(items) > 1 and not as_json:
            from rich.progress import track

            progress = track(items, description="inserting", console=err)
        for item in progress:
            admin.put_row(item)
            inserted.append(item["id"]["S"])
    if as_json:
        typer.echo(json.dumps({"inserted": inserted}))
    else:
        for row_id_ in inserted[:20]:
            out.print(f"inserted {row_id_}")
        if len(inserted) > 20:
            out.print(f"... and {len(inserted) - 20} more")


@app.command("ls")
def list_rows(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="failed, deferred, scheduled, or pending (not yet handled).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to show at most.", min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List the send table: what is waiting, failed or deferred, and why."""
    with _errors_as_exit():
        if status not in (None, "failed", "deferred", "scheduled", "pending"):
            raise CommandError(
                f"--status must be failed, deferred, scheduled or pending, not {status!r}"
            )
        admin = _target(ctx).admin
        if status == "scheduled":
            rows_iter = admin.waiting_rows(status)
        elif status in ("failed", "deferred"):
            rows_iter = admin.stamped_rows(status)
        else:
            err.print("[dim](a paginated Scan of the send table: no index serves this)[/]")
            rows_iter = admin.scan_rows()
            if status == "pending":
                rows_iter = (r for r in rows_iter if "status" not in r.image)
        rows, more = _take(rows_iter, limit)
    plain_rows = [plain(r.image) for r in rows]
    if as_json:
        typer.echo(json.dumps({"rows": plain_rows, "truncated": more}, default=str))
        return
    table = Table("id", "status", "attempts", "kind", "last error", "age")
    for row in sorted(plain_rows, key=lambda r: str(r.get("id"))):
        table.add_row(
            str(row["id"]),
            row.get("status", "pending"),
            str(row.get("attempts", "")),
            row.get("error_kind", ""),
            _clip(row.get("last_error", ""), 60),
            _age(row.get("failed_at")),
        )
    out.print(table)
    if more:
        out.print(f"(first {limit} rows; use --limit for more)")


@app.command()
def show(
    ctx: typer.Context,
    row_id: Annotated[str, typer.Argument(metavar="ID", help="The row's id.")],
    live: LiveOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show one row, its last error and its history."""
    with _errors_as_exit():
        admin = _target(ctx).admin
        row = admin.get_row(row_id)
        history = admin.history(row_id)
        if row is None and not history:
            raise CommandError(f"no row and no history for id {row_id!r}")
        plain_history = [plain(h) for h in history]
        deliveries = _deliveries(ctx, plain_history) if live else {}
    plain_row = plain(row.image) if row else None
    if as_json:
        document = {"row": plain_row, "history": plain_history}
        if live:
            document["deliveries"] = deliveries
        typer.echo(json.dumps(document, default=str))
        return
    if plain_row is None:
        out.print(f"{row_id}: not in the send table (sent, or cancelled)")
    else:
        out.print(f"[bold]{row_id}[/]  status: {plain_row.get('status', 'pending')}")
        for key in sorted(plain_row):
            if key not in ("id", "last_error", "unsettled"):
                out.print(f"  {key}: {_clip(str(plain_row[key]), 200)}", markup=False)
        if "last_error" in plain_row:
            out.print("  last error:", markup=False)
            for reason in str(plain_row["last_error"]).split("; "):
                out.print(f"    {reason}", markup=False)
        if row is not None and row.unsettled is not None:
            waiting = describe_unsettled(row.unsettled, row.retry_at)
            out.print(f"  waiting for its look-up: {waiting}", markup=False)
    for item in plain_history:
        confirmed = " - confirmed by look-up" if item.get("confirmed_by") == "lookup" else ""
        out.print(
            f"  sent {item.get('sent_at')} through {item.get('provider', 'blastengine')} as "
            f"delivery {item.get('delivery_id', '?')} ({item.get('attempts')} attempt(s))"
            f"{confirmed}",
            markup=False,
        )
        if item.get("bounce_type"):
            out.print(
                f"    bounced: {item['bounce_type']} at {item.get('bounced_at')} "
                f"({item.get('bounce_address')}, code {item.get('bounce_code', '?')})",
                markup=False,
            )
        detail = deliveries.get(str(item.get("delivery_id")))
        if detail is not None:
            out.print(f"    blastengine now: {_delivery_line(detail)}", markup=False)


@app.command()
def retry(
    ctx: typer.Context,
    row_ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="Rows to re-send.")
    ] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed row.")] = False,
    kind: Annotated[
        str | None,
        typer.Option(
            help="With --all-failed: only this error_kind (invalid, rejected, transient, "
            "rate_limited, config, suppressed, blocked, expired, ambiguous: an ambiguous row "
            "is looked up again, never sent blindly; an expired row fails again unless its "
            "expires_at was moved)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-send rows by bumping their revision (only if they are still as they were read)."""
    with _errors_as_exit():
        if bool(row_ids) == all_failed:
            raise CommandError("give row ids or --all-failed (one of the two)")
        if kind is not None and not all_failed:
            raise CommandError("--kind goes with --all-failed")
        kinds = [k.value for k in ErrorKind]
        if kind is not None and kind not in kinds:
            raise CommandError(f"--kind must be one of {', '.join(kinds)}, not {kind!r}")
        admin = _target(ctx).admin
        if all_failed:
            targets = [(r.id, r) for r in admin.stamped_rows("failed", error_kind=kind)]
        else:
            targets = [(i, admin.get_row(i)) for i in row_ids or []]
        results = []
        for row_id, row in targets:
            if row is None:
                results.append({"id": row_id, "result": "not found"})
                continue
            fired = admin.refire(row)
            results.append(
                {"id": row_id, "result": "re-fired" if fired else "changed meanwhile; not re-fired"}
            )
    if as_json:
        typer.echo(json.dumps({"results": results}))
    else:
        for result in results:
            if result["result"] != "not found":
                out.print(f"{result['id']}: {result['result']}")
        if not results:
            out.print("nothing to retry")
    missing = [r["id"] for r in results if r["result"] == "not found"]
    if missing:
        _fail(f"no row with id {', '.join(repr(i) for i in missing)}")


@app.command()
def cancel(
    ctx: typer.Context,
    row_id: Annotated[str, typer.Argument(metavar="ID", help="The row to delete.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete a pending row too (one with no status yet), although the dispatcher "
            "may be sending it at this moment.",
        ),
    ] = False,
) -> None:
    """Delete a row that is waiting (failed, deferred or scheduled), so it is never sent.

    The delete is conditional on the row as it was read: a row the dispatcher re-stamped or
    someone edited meanwhile is left alone. If its mail went out anyway (its send was already
    under way), the command says so as an error (exit 2).
    """
    from dispatcher.clock import iso_utc

    with _errors_as_exit():
        admin = _target(ctx).admin
        row = admin.get_row(row_id)
        if row is None:
            raise CommandError(f"no row with id {row_id!r}")
        if row.in_flight and not force:
            why = "pending" if row.status is None else f"re-fired at {row.fired_at}"
            raise CommandError(
                f"{row_id} is {why}: the dispatcher may be sending it right now, so "
                "cancelling cannot promise it is not sent. `dispatcher show` tells what "
                "happened; --force deletes it anyway"
            )
        read_at = iso_utc(datetime.now(UTC) - timedelta(seconds=1))
        if not admin.cancel(row):
            raise CommandError(
                f"{row_id} changed since it was read (sent, or re-stamped); not cancelled"
            )
        sent = admin.history(row_id, since=read_at)
    if sent:
        delivery = plain(sent[-1]).get("delivery_id", "?")
        _fail(
            f"{row_id} was deleted, but it was already being sent: the history has it as "
            f"delivery {delivery}"
        )
    if row.in_flight:
        out.print(
            f"{row_id}: deleted; its send may have been under way, so it may still go out "
            f"(`dispatcher history --id {row_id}` in a few seconds tells)"
        )
        return
    out.print(f"cancelled {row_id}")


@app.command()
def history(
    ctx: typer.Context,
    row_id: Annotated[str | None, typer.Option("--id", help="One row's history.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only mail sent at or after this ISO-8601 time.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Items to show at most.", min=1)] = 50,
    live: LiveOption = False,
    as_json: JsonOption = False,
) -> None:
    """What was sent: the history table."""
    with _errors_as_exit():
        since_utc = _iso(since, "--since") if since else None
        admin = _target(ctx).admin
        if row_id is not None:
            items_iter: Iterator[dict[str, Any]] = iter(admin.history(row_id, since=since_utc))
        else:
            err.print("[dim](a paginated Scan of the history table; --id makes it a Query)[/]")
            items_iter = admin.scan_history(since=since_utc)
        if live and row_id is None:
            raise CommandError("--live goes with --id (one row's deliveries, not the table's)")
        items, more = _take(items_iter, limit)
        plain_items = sorted((plain(i) for i in items), key=lambda i: str(i.get("sent_at")))
        deliveries = _deliveries(ctx, plain_items) if live else {}
    if as_json:
        document: dict[str, Any] = {"history": plain_items, "truncated": more}
        if live:
            document["deliveries"] = deliveries
        typer.echo(json.dumps(document, default=str))
        return
    table = Table("sent at", "id", "to", "subject", "provider", "delivery", "attempts", "bounce")
    for item in plain_items:
        table.add_row(
            str(item.get("sent_at")),
            str(item.get("id")),
            str(item.get("to")),
            _clip(str(item.get("subject", "")), 40),
            str(item.get("provider", "")),
            str(item.get("delivery_id", ""))
            + (" (confirmed by look-up)" if item.get("confirmed_by") == "lookup" else "")
            + (
                f" ({_delivery_line(deliveries[str(item.get('delivery_id'))])})"
                if str(item.get("delivery_id")) in deliveries
                else ""
            ),
            str(item.get("attempts", "")),
            f"{item['bounce_type']} {item.get('bounce_address', '')}"
            if item.get("bounce_type")
            else "",
        )
    out.print(table)
    if more:
        out.print(f"(first {limit} items; use --limit for more)")


suppressed_app = typer.Typer(
    help="The suppression list: addresses no mail goes to (hard bounces, blastengine's stop "
    "list, or added here). Without a subcommand: list them.",
    invoke_without_command=True,
)
app.add_typer(suppressed_app, name="suppressed")


@suppressed_app.callback()
def suppressed_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the suppressed addresses and why each is."""
    if ctx.invoked_subcommand is not None:
        return
    with _errors_as_exit():
        entries = sorted(_suppressions(ctx).all(), key=lambda e: e.address)
    if as_json:
        typer.echo(json.dumps({"suppressed": [asdict(e) for e in entries]}))
        return
    table = Table("address", "why", "delivery")
    for entry in entries:
        table.add_row(entry.address, entry.describe(), entry.delivery_id or "")
    out.print(table)
    if not entries:
        out.print("no address is suppressed")


@suppressed_app.command("add")
def suppressed_add(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The address to send no more mail to.")],
    note: Annotated[str | None, typer.Option(help="Why (kept with the entry).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Suppress an address by hand: rows to it fail `suppressed` until it is removed."""
    from email_validator import EmailNotValidError, validate_email

    from dispatcher.clock import iso_utc
    from dispatcher.suppression import Suppression, normalise

    with _errors_as_exit():
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise CommandError(f"{address!r} is not an address: {exc}") from None
        entry = Suppression(
            address=normalise(address),
            reason="OPERATOR",
            added_at=iso_utc(datetime.now(UTC)),
            message=note,
        )
        _suppressions(ctx).add(entry)
    typer.echo(json.dumps({"added": asdict(entry)}) if as_json else f"suppressed {entry.address}")


@suppressed_app.command("remove")
def suppressed_remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The address to send mail to again.")],
    as_json: JsonOption = False,
) -> None:
    """Lift an address's suppression (edit or re-fire its failed rows to send them)."""
    with _errors_as_exit():
        if not _suppressions(ctx).remove(address):
            raise CommandError(f"{address!r} is not suppressed")
    typer.echo(json.dumps({"removed": address}) if as_json else f"no longer suppressed: {address}")


@app.command()
def bounces(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only bounces received this long ago or later: 30m, 2h, 7d.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--type", help="HARDERROR, SOFTERROR, DROP or COMPLAINT.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Bounces to show at most.", min=1)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Recent bounces and complaints the providers reported, joined to their history item
    or still orphans (their delivery has no history item yet)."""
    from dispatcher.bounces import BounceType
    from dispatcher.clock import iso_utc

    with _errors_as_exit():
        try:
            wanted = BounceType(kind) if kind is not None else None
        except ValueError:
            raise CommandError("--type must be HARDERROR, SOFTERROR, DROP or COMPLAINT") from None
        cutoff = iso_utc(datetime.now(UTC) - _duration(since, "--since")) if since else None
        err.print("[dim](a paginated Scan of the bounce table)[/]")
        items, more = _take(_target(ctx).ledger().recent(since=cutoff, kind=wanted), limit)
    rows = sorted((plain(i) for i in items), key=lambda i: str(i.get("received_at")))
    if as_json:
        typer.echo(json.dumps({"bounces": rows, "truncated": more}, default=str))
        return
    table = Table("received", "type", "address", "delivery", "code", "history row")
    for bounce in rows:
        table.add_row(
            str(bounce.get("received_at", ""))[:19],
            str(bounce.get("type")),
            str(bounce.get("address")),
            str(bounce.get("delivery_id")),
            str(bounce.get("code", "")),
            str(bounce.get("joined_to", "(orphan)")),
        )
    out.print(table)
    if more:
        out.print(f"(first {limit}; use --limit for more)")


@app.command()
def reconcile(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="How far back to read blastengine's delivery logs: 30m, 2h, 1d.")
    ] = "2h",
    as_json: JsonOption = False,
) -> None:
    """Catch up bounces whose webhook never came, from blastengine's delivery logs, through
    the webhook's own idempotent path; then join orphan bounces to their history."""
    from dispatcher.reconcile import Reconciler

    with _errors_as_exit():
        until = datetime.now(UTC)
        target = _target(ctx)
        reconciler = Reconciler(provider=target.provider(), ledger=target.ledger())
        result = reconciler.catch_up(until - _duration(since, "--since"), until)
    if as_json:
        typer.echo(json.dumps(asdict(result)))
        return
    out.print(
        f"{result.results} bounce result(s) read, {result.applied} new to the history, "
        f"{result.joined_orphans} orphan(s) joined"
        + (" (stopped at the page limit: run it again)" if result.truncated else "")
    )


@app.command("webhook-url")
def webhook_url(ctx: typer.Context) -> None:
    """The bounce webhook's full URL, secret included, to paste into blastengine's console."""
    with _errors_as_exit():
        target = _target(ctx)
        url = target.webhook_url
        if not url:
            raise CommandError("this stack has no bounce webhook")
        if url.endswith("/hooks/"):  # a deployed stack's output stops before the secret
            url += _webhook_secret()
    typer.echo(url)


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

    with _errors_as_exit():
        name = _target(ctx).events_file
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
        parts.append(_clip(str(d["reason"]), 80))
    typer.echo("  ".join(parts))


@app.command()
def sandbox(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """What the local sandbox received (the mail it accepted)."""
    import httpx

    with _errors_as_exit():
        url = _target(ctx).sandbox_url
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
            _clip(str(payload.get("subject", "")), 50),
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


# ----------------------------------------------------------------------------- helpers


def _duration(value: str, option: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = value[:-1], value[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise CommandError(f"{option} wants a duration such as 30m, 2h or 7d, got {value!r}")
    return timedelta(seconds=int(number) * units[unit])


def _webhook_secret() -> str:
    """The deployed webhook's secret, from SSM with your own AWS credentials."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    name = os.environ.get("WEBHOOK_SECRET_PARAMETER") or "/mail-dispatcher/webhook-secret"
    try:
        response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        raise CommandError(f"cannot read the webhook secret {name!r}: {exc}") from None
    return str(response["Parameter"]["Value"])


def _target(ctx: typer.Context) -> Any:
    return ctx.find_root().obj.target()


def _suppressions(ctx: typer.Context) -> Any:
    suppressions = _target(ctx).suppressions
    if suppressions is None:
        raise CommandError("this stack has no suppression table")
    return suppressions


@contextlib.contextmanager
def _errors_as_exit() -> Iterator[None]:
    """At the command edge: a domain error is one stderr line and exit status 2."""
    from dispatcher.attachments import AttachmentsUnavailableError
    from dispatcher.providers.errors import ProviderError
    from dispatcher.store import StoreError
    from dispatcher.targets import TargetError

    try:
        yield
    except (CommandError, SettingsError, TargetError, StoreError) as exc:
        _fail(str(exc))
    except (AttachmentsUnavailableError, ProviderError) as exc:
        _fail(str(exc))
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        # Still one line (a table the CLI cannot read, an answer it did not expect); the
        # traceback is there for whoever asks.
        if os.environ.get("DISPATCHER_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (DISPATCHER_DEBUG=1 shows the traceback)")


def _fail(message: str) -> None:
    err.print(f"dispatcher: error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {what} {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} {path} is not JSON: {exc}") from None


def _read_jsonl(path: Path) -> list[Any]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CommandError(f"rows file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read rows file {path}: {exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CommandError(f"{path}:{number} is not JSON: {exc}") from None
    if not rows:
        raise CommandError(f"{path} holds no rows")
    return rows


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CommandError(f"--insert-code wants KEY=VALUE, got {item!r}")
    return key, value


def _checked_item(row: Any, *, label: str) -> dict[str, Any]:
    """A plain row as a DynamoDB item, refused with every problem if the dispatcher would."""
    from boto3.dynamodb.types import TypeSerializer

    from dispatcher.message import parse_message
    from dispatcher.row import Row

    if not isinstance(row, dict):
        raise CommandError(f"{label} must be a JSON object")
    row = {"id": str(uuid.uuid4()), **row}
    try:
        item: dict[str, Any] = {k: TypeSerializer().serialize(v) for k, v in row.items()}
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{label}: {exc}") from None
    if not isinstance(row["id"], str) or not row["id"]:
        raise CommandError(f"{label}: id must be a non-empty string")
    parsed = parse_message(
        Row.from_image(row["id"], item), default_from_email="default@example.invalid"
    )
    if isinstance(parsed, list):
        raise CommandError(f"{label} ({row['id']}) would fail: " + "; ".join(parsed))
    return item


def _attach(ctx: typer.Context, row: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    """Upload ``files`` to the stack's attachments bucket and name them in ``row``."""
    for path in files:
        if not path.is_file():
            raise CommandError(f"--attach: no such file: {path}")
    attachments = _target(ctx).attachments
    if attachments is None or not attachments.bucket:
        raise CommandError("this stack has no attachments bucket")
    named = []
    for path in files:
        key = f"{row['id']}/{path.name}"
        attachments.upload(path, key)
        named.append({"key": key, "filename": path.name})
    return {**row, "attachments": named}


def _deliveries(ctx: typer.Context, history: list[dict[str, Any]]) -> dict[str, Any]:
    """blastengine's current detail of each history item's delivery, by delivery id (SES
    has no such look-up: its deliveries come as events, on the history item already)."""
    provider = _target(ctx).provider()
    return {
        str(item["delivery_id"]): provider.delivery(str(item["delivery_id"]))
        for item in history
        if item.get("delivery_id") is not None
        and item.get("provider", "blastengine") == "blastengine"
    }


def _delivery_line(detail: dict[str, Any]) -> str:
    counts = ", ".join(
        f"{detail.get(key, 0)} {label}"
        for key, label in (
            ("sent_count", "sent"),
            ("hard_error_count", "hard error"),
            ("soft_error_count", "soft error"),
            ("drop_count", "dropped"),
        )
    )
    return f"{detail.get('status', '?')} ({counts})"


def _seed_rows(admin: Any, event: dict[str, Any]) -> None:
    for record in event["Records"]:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") in ("INSERT", "MODIFY") and image:
            admin.put_row(image, overwrite=True)


def _take(items: Iterator[Any], limit: int) -> tuple[list[Any], bool]:
    taken: list[Any] = []
    for item in items:
        if len(taken) == limit:
            return taken, True
        taken.append(item)
    return taken, False


def _iso(value: str, option: str) -> str:
    from dispatcher.clock import iso_utc

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} wants an ISO-8601 time, got {value!r}") from None
    return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _age(stamp: Any) -> str:
    then = parse_iso(stamp)
    if then is None:
        return ""
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # `python -m dispatcher.cli`, as the end-to-end tests run it
    main()
