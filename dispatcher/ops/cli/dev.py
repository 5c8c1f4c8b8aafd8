"""``dispatcher dev`` (the local stack in the foreground) and ``dispatcher console``."""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
import threading
from dataclasses import replace
from typing import Annotated, Any

import typer

from dispatcher.ops.cli.common import (
    CommandError,
    _Provider,
    app,
    err,
    errors_as_exit,
    fail,
    target_of,
)


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
    sandbox_window: Annotated[
        str,
        typer.Option(
            help="Shape of the sandbox's rate limit: fixed (one-second windows, as blastengine "
            "describes its limit) or bucket (an API gateway's token bucket)."
        ),
    ] = "fixed",
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
    sandbox_bounce_share: Annotated[
        float,
        typer.Option(
            help="A share of the mail the sandbox takes that it then reports as hard bounces "
            "(watch the reputation guard pause a category).",
            min=0,
            max=1,
        ),
    ] = 0.0,
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
    if log_format not in (None, "json", "human"):
        fail(f"--log-format must be json or human, not {log_format!r}")
    from dispatcher.local.sandbox.window import WINDOW_SHAPES

    if sandbox_window not in WINDOW_SHAPES:
        fail(f"--sandbox-window must be {' or '.join(WINDOW_SHAPES)}, not {sandbox_window!r}")
    from dispatcher.local.demo import BOUNCING_ADDRESS
    from dispatcher.local.stack import LocalStack, StackOptions

    real_stdout = _logs_to_stderr()
    log_format = log_format or ("human" if sys.stderr.isatty() else "json")
    colour = err.is_terminal and not err.no_color
    if log_format == "human":
        from dispatcher.local.terminal import use_human_logs
        from dispatcher.support.observability import logger

        use_human_logs(logger, colour=colour)
    faults = _sandbox_faults(
        bounce_rules=[*(sandbox_bounce or []), *([f"{BOUNCING_ADDRESS}=HARDERROR"] * demo)],
        server_error=sandbox_fail,
        rate_limited=sandbox_429,
        rate_limit=sandbox_rps,
        window=sandbox_window,
        latency=sandbox_latency,
        accepted_timeout=sandbox_accept_then_hang,
        timeout=sandbox_hang,
        lookup_lag=sandbox_lookup_lag,
        bounce_share=sandbox_bounce_share,
        fail_to=("flaky@example.com",) if demo else (),
        seed=seed,
    )
    mapping = {"parallelization_factor": parallelization_factor, "batching_window": batching_window}
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
        mapping_overrides={name: value for name, value in mapping.items() if value is not None},
    )
    try:
        _run(ctx, LocalStack(options), real_stdout, console=console, port=console_port, demo=demo)
    finally:
        sys.stdout = real_stdout


def _logs_to_stderr() -> Any:
    """Everything after the ready line goes to stderr, Powertools' logger included: it binds
    the stream current when it is created, which may have been before this command ran (any
    module importing it), so its handler is pointed at stderr explicitly. Returns the real
    stdout, for the ready line."""
    import logging

    from dispatcher.support.observability import logger

    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    return real_stdout


def _sandbox_faults(*, bounce_rules: list[str], lookup_lag: float | None, **faults: Any) -> Any:
    """The sandbox's faults from the options; ``--sandbox-bounce`` rules read and checked."""
    from dispatcher.local.sandbox.model import Faults

    bounces: dict[str, str] = {}
    for rule in bounce_rules:
        where, _, kind = rule.partition("=")
        if not where or kind not in ("HARDERROR", "SOFTERROR", "DROP"):
            fail(f"--sandbox-bounce wants ADDRESS=TYPE (HARDERROR, SOFTERROR, DROP), got {rule!r}")
        bounces[where.lower()] = kind
    built = Faults(bounce=bounces, **faults)
    return built if lookup_lag is None else replace(built, lookup_lag=lookup_lag)


def _run(
    ctx: typer.Context, stack: Any, real_stdout: Any, *, console: bool, port: int, demo: bool
) -> None:
    """Start the stack (and the console over it), print the ready line, wait for Ctrl-C or
    SIGTERM or the stack's failure, then stop everything."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    web: Any = None
    with errors_as_exit():
        try:
            info = stack.start()
            if console:
                from dispatcher.ops.targets import local_stack

                web = _serve_console(
                    local_stack(ctx.obj.state_dir),  # from the local.json just written
                    port=port,
                    sender=stack.function_env["DEFAULT_FROM_EMAIL"],
                )
                info = stack.publish(replace(info, console_url=web.url))
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


def _serve_console(target: Any, *, host: str = "127.0.0.1", port: int, sender: str) -> Any:
    """The web console over ``target``'s tables, started (``sender``: the default from
    address the edit form's checks assume, as the function's)."""
    from dispatcher.ops.console import ConsoleServer

    return ConsoleServer(
        target.admin,
        host=host,
        port=port,
        default_from_email=sender,
        target=target.name,
        staging=target.staging,
    ).start()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


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
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Let --host be an address other machines reach. The console speaks plain "
            "HTTP: its token and cookie cross the network in clear, for anyone on the path.",
        ),
    ] = False,
) -> None:
    """Serve the web console for the stack (the local one, or --stack NAME with your own AWS
    credentials) until Ctrl-C. Prints the URL to open: it carries the console's token."""
    with errors_as_exit():
        if not _is_loopback(host):
            if not allow_remote:
                raise CommandError(
                    f"--host {host} is reachable from other machines, and the console speaks "
                    "plain HTTP: its token would cross the network in clear. Use an SSH "
                    "tunnel to 127.0.0.1, or add --allow-remote if you accept that"
                )
            err.print(
                f"warning: serving on {host} without TLS; the token in the URL and the "
                "cookie travel in clear. Anyone who sees them can drive this console.",
                markup=False,
            )
        target = target_of(ctx)
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
