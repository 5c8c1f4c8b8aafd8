"""The whole service on one machine: what ``dispatcher dev`` starts and stops.

- a DynamoDB endpoint with streams (moto's server) and the three tables from ``template.yaml``;
- the blastengine sandbox (or an external blastengine-compatible API);
- the poller: the stream's event source mapping, invoking the dispatcher function with the
  mapping's semantics, over ``shards`` virtual shards and the template's
  ``ParallelizationFactor``, each concurrent invocation in an execution environment of its
  own (in this process, or with ``kill_rate`` in a process of its own that chaos can kill:
  :mod:`.worker`); every environment shares the account's one rate limit;
- the sweeper function on a timer.

Both functions are composed exactly as the Lambda entry modules compose them
(:mod:`dispatcher.functions`), from a :class:`~dispatcher.settings.Settings` read from the
environment a deployed function would have (:attr:`LocalStack.function_env`) and clients of
this stack's endpoint; nothing here touches the process's own environment. What the CLI
needs to find the stack is written to ``local.json`` in the state directory and removed on
stop.
"""

from __future__ import annotations

import fcntl
import functools
import itertools
import json
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from dispatcher.local.dynamodb_process import DynamoDBProcess
from dispatcher.local.event_bus import EVENTS_FILE, LocalEventBus
from dispatcher.local.function_url import FunctionUrlServer
from dispatcher.local.persistence import SAVE_INTERVAL_SECONDS, SNAPSHOT_FILE, TableSnapshots
from dispatcher.local.poller import FileFailureDestination, MappingConfig, StreamPoller
from dispatcher.local.sam_env import SAM_ENV_FILE, store_secrets, write_sam_env
from dispatcher.local.sandbox import SANDBOX_API_KEY, SANDBOX_LOGIN_ID, Faults
from dispatcher.local.sandbox_process import SandboxProcess
from dispatcher.local.tables import (
    BOUNCE_TABLE,
    HISTORY_TABLE,
    IDEMPOTENCY_TABLE,
    RATE_LIMIT_TABLE,
    SEND_TABLE,
    SUPPRESSION_TABLE,
    create_bucket,
    load_template,
)
from dispatcher.local.worker import LOG_COLOUR_VARIABLE, LOG_FORMAT_VARIABLE, FunctionWorker
from dispatcher.ops.targets import default_state_dir
from dispatcher.settings import Settings

__all__ = ["STATE_FILE", "LocalStack", "ReadyInfo", "StackOptions", "default_state_dir"]

STATE_FILE = "local.json"
#: Sweeps between two catch-ups from the sandbox's delivery logs.
RECONCILE_EVERY = 60
LOCK_FILE = "lock"
TABLE_NAMES = {
    SEND_TABLE: "mail-dispatcher-send",
    HISTORY_TABLE: "mail-dispatcher-history",
    IDEMPOTENCY_TABLE: "mail-dispatcher-idempotency",
    SUPPRESSION_TABLE: "mail-dispatcher-suppression",
    BOUNCE_TABLE: "mail-dispatcher-bounces",
    RATE_LIMIT_TABLE: "mail-dispatcher-rate-limit",
}
#: The template's AttachmentsBucket, as the local endpoint's S3 serves it.
ATTACHMENTS_BUCKET = "mail-dispatcher-attachments"

_REGION = "us-east-1"
#: Seconds past the sandbox's look-up lag after which the function trusts a "not found".
LOOKUP_DELAY_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class StackOptions:
    """How ``dispatcher dev`` was asked to run."""

    port: int = 0
    provider_url: str | None = None
    sandbox_faults: Faults = field(default_factory=Faults)
    sweep_interval: float = 10.0
    state_dir: Path = field(default_factory=default_state_dir)
    crash_rate: float = 0.0  # share of invocations that crash after the handler ran
    kill_rate: float = 0.0  # share of invocations killed mid-batch (function in its own process)
    dynamodb_fault_rate: float = 0.0  # share of the handler's DynamoDB calls throttled
    seed: int | None = None
    fresh: bool = False  # start with empty tables, discarding what the state dir kept
    persist: bool = True  # keep the tables across restarts (off: in memory only)
    shards: int = 1  # the send table's stream fanned out as a table with this many partitions
    #: The mapping's settings instead of the template's defaults, as `sam deploy
    #: --parameter-overrides` would set them (``batching_window``, ``parallelization_factor``).
    mapping_overrides: dict[str, Any] = field(default_factory=dict)
    log_format: str = "json"  # the functions' logs: json (Lambda's lines) or human
    log_colour: bool = False
    log_level: str | None = None  # the functions' (POWERTOOLS_LOG_LEVEL); None: theirs
    #: MAIL_PROVIDER / FAILOVER_PROVIDER for the functions; None: the environment's. SES is
    #: moto's, on the stack's endpoint, with the default sender's domain verified.
    mail_provider: str | None = None
    failover_provider: str | None = None
    #: The stack's address from SAM's Lambda container, in the --env-vars file it writes.
    sam_host: str = "host.docker.internal"


@dataclass(frozen=True)
class ReadyInfo:
    """The ``ready`` line (``DESIGN.md``, "Interfaces") and what the CLI needs besides."""

    endpoint_url: str
    region: str
    send_table: str
    history_table: str
    idempotency_table: str
    provider_url: str
    sandbox_url: str | None
    on_failure_file: str
    stream_arn: str
    attachments_bucket: str
    suppression_table: str
    bounce_table: str
    webhook_url: str = ""
    #: The delivery events' bus on the endpoint, and the file the stack's own tap fills.
    event_bus: str = ""
    events_file: str = ""
    #: ``sam local invoke --env-vars`` file pointing the built function at this stack.
    sam_env_file: str = ""
    #: The web console's URL with its token, when ``dispatcher dev`` serves it.
    console_url: str = ""
    #: What another process needs to run the function against this stack (``dispatcher
    #: invoke``, a second shard): the function's environment, secrets the user gave left out.
    env: dict[str, str] = field(default_factory=dict)

    def ready_line(self) -> str:
        keys = (
            "endpoint_url",
            "region",
            "send_table",
            "history_table",
            "idempotency_table",
            "provider_url",
            "attachments_bucket",
            "webhook_url",
            "event_bus",
            "console_url",
            "env",
        )
        return json.dumps({"event": "ready", **{k: getattr(self, k) for k in keys}})


class LocalStack:
    """Starts every part, in order, and stops them in reverse."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.dynamodb: DynamoDBProcess | None = None
        self.sandbox: SandboxProcess | None = None
        self.poller: StreamPoller | None = None
        self.info: ReadyInfo | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.function_env: dict[str, str] = {}
        #: Why the stack stopped by itself (a thread of it died); None while it is healthy.
        self.failure: str | None = None
        self.snapshots: TableSnapshots | None = None
        self.event_bus: LocalEventBus | None = None
        self.webhook: FunctionUrlServer | None = None
        self._lock_file: IO[bytes] | None = None
        self._wrote_state = False
        self.mapping: MappingConfig | None = None
        self.workers: list[FunctionWorker] = []

    def start(self) -> ReadyInfo:
        state_dir = self.options.state_dir
        self._lock_state_dir()
        self.dynamodb = DynamoDBProcess(port=self.options.port).start()
        endpoint = self.dynamodb.endpoint_url
        # One client for the stack's own use (saves, sweeps, catch-ups, the webhook): boto3
        # clients are thread-safe. The dispatcher gets its own, which chaos may throttle.
        tables = self.client("dynamodb")
        self.snapshots = TableSnapshots(state_dir / SNAPSHOT_FILE, tables, TABLE_NAMES)
        if self.options.fresh or not self.options.persist:
            self.snapshots.discard()
            (state_dir / EVENTS_FILE).unlink(missing_ok=True)  # the events of those tables
        streams = self.snapshots.create_and_restore()
        create_bucket(self.client("s3"), ATTACHMENTS_BUCKET)
        self.event_bus = LocalEventBus(
            self.client("events"), self.client("sqs"), state_dir / EVENTS_FILE
        )
        bus_name = self.event_bus.create()

        if self.options.provider_url:
            provider_url = self.options.provider_url
            credentials: dict[str, str] = {}  # the user's BLASTENGINE_* environment
        else:
            # The sandbox logs in as blastengine does: with the credentials in the
            # environment when both are set, else with its own fixed ones (README).
            env_id = os.environ.get("BLASTENGINE_LOGIN_ID")
            env_key = os.environ.get("BLASTENGINE_API_KEY")
            login_id, api_key = (
                (env_id, env_key) if env_id and env_key else (SANDBOX_LOGIN_ID, SANDBOX_API_KEY)
            )
            self.sandbox = SandboxProcess(
                login_id=login_id, api_key=api_key, faults=self.options.sandbox_faults
            ).start()
            provider_url = self.sandbox.base_url
            credentials = {"BLASTENGINE_LOGIN_ID": login_id, "BLASTENGINE_API_KEY": api_key}
        # What the function's environment would be in Lambda: the user's own settings
        # (RATE_LIMIT_RPS, ...) where given, this stack's endpoint, tables and provider.
        self.function_env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": _REGION,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID") or "local",
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY") or "local",
            "SEND_TABLE_NAME": TABLE_NAMES[SEND_TABLE],
            "HISTORY_TABLE_NAME": TABLE_NAMES[HISTORY_TABLE],
            "IDEMPOTENCY_TABLE_NAME": TABLE_NAMES[IDEMPOTENCY_TABLE],
            "SUPPRESSION_TABLE_NAME": TABLE_NAMES[SUPPRESSION_TABLE],
            "BOUNCE_TABLE_NAME": TABLE_NAMES[BOUNCE_TABLE],
            "RATE_LIMIT_TABLE_NAME": TABLE_NAMES[RATE_LIMIT_TABLE],
            # A fresh secret per run unless you pin one: the URL is the webhook's only key.
            "WEBHOOK_SECRET": os.environ.get("WEBHOOK_SECRET") or secrets.token_urlsafe(32),
            "BLASTENGINE_BASE_URL": provider_url,
            "DEFAULT_FROM_EMAIL": os.environ.get("DEFAULT_FROM_EMAIL") or "noreply@example.com",
            "ATTACHMENTS_BUCKET": ATTACHMENTS_BUCKET,
            "EVENT_BUS_NAME": bus_name,
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED") or "true",
            **credentials,
        }
        if self.sandbox is not None:
            # The sandbox's look-ups lag as blastengine's may; an unanswered send is looked
            # up a little after that lag rather than after production's ten minutes.
            lag = self.options.sandbox_faults.lookup_lag
            self.function_env["LOOKUP_DELAY_SECONDS"] = (
                os.environ.get("LOOKUP_DELAY_SECONDS") or f"{lag + LOOKUP_DELAY_MARGIN_SECONDS:g}"
            )
        for name, value in (
            ("MAIL_PROVIDER", self.options.mail_provider),
            ("FAILOVER_PROVIDER", self.options.failover_provider),
            # Staging safety travels with the ready line's env: a process started with it
            # (dispatcher invoke) and the console keep to the same recipients.
            ("RECIPIENT_ALLOWLIST", os.environ.get("RECIPIENT_ALLOWLIST") or None),
            ("REDIRECT_ALL_TO", os.environ.get("REDIRECT_ALL_TO") or None),
        ):
            if value is not None:
                self.function_env[name] = value
        settings = Settings.from_env({**os.environ, **self.function_env})
        if "ses" in settings.providers:
            # SES sends only from verified identities: the default sender's whole domain.
            domain = settings.default_from_email.rpartition("@")[2]
            self.client("sesv2").create_email_identity(EmailIdentity=domain)
        # Every sender sharing the account's limit must agree on it: a process started with
        # the ready line's env (`dispatcher invoke`) paces at the stack's R, not the default.
        self.function_env["RATE_LIMIT_RPS"] = f"{settings.rate_limit_rps:g}"
        faults = self.options.sandbox_faults
        if self.sandbox is not None and (faults.timeout or faults.accepted_timeout):
            # A hang must outlast the function's request timeout to be one.
            hang = max(faults.hang_seconds, settings.request_timeout_seconds + 1)
            self.sandbox.set_faults(replace(faults, hang_seconds=hang))

        on_failure = FileFailureDestination(state_dir / "on-failure.jsonl")
        self.info = ReadyInfo(
            endpoint_url=endpoint,
            region=_REGION,
            send_table=TABLE_NAMES[SEND_TABLE],
            history_table=TABLE_NAMES[HISTORY_TABLE],
            idempotency_table=TABLE_NAMES[IDEMPOTENCY_TABLE],
            provider_url=provider_url,
            sandbox_url=self.sandbox.base_url if self.sandbox else None,
            on_failure_file=str(on_failure.path.resolve()),
            stream_arn=streams[SEND_TABLE],
            attachments_bucket=ATTACHMENTS_BUCKET,
            suppression_table=TABLE_NAMES[SUPPRESSION_TABLE],
            bounce_table=TABLE_NAMES[BOUNCE_TABLE],
            event_bus=bus_name,
            events_file=str(self.event_bus.path.resolve()),
            sam_env_file=str(self._write_sam_env(state_dir).resolve()),
            env=self._shareable_env(),
        )

        template = load_template()
        timeouts = _function_timeouts(template)
        self.mapping = replace(
            MappingConfig.from_template(template), **self.options.mapping_overrides
        )
        invoke = self._dispatch_invoker(timeouts["DispatcherFunction"])
        sweeper = self._worker("SweeperFunction")
        webhooks = EnvironmentPool(
            lambda: functools.partial(
                self._worker("WebhookFunction").invoke, timeout=timeouts["WebhookFunction"]
            )
        )
        self.webhook = FunctionUrlServer(webhooks.invoke).start()
        webhook_url = f"{self.webhook.url}hooks/{self.function_env['WEBHOOK_SECRET']}"
        self.info = replace(self.info, webhook_url=webhook_url)
        if self.sandbox is not None:
            self.sandbox.webhook_url = webhook_url  # it reports bounces as blastengine would

        self.poller = StreamPoller(
            self.client("dynamodbstreams"),
            streams[SEND_TABLE],
            self.mapping,
            invoke,
            on_failure,
            shards=self.options.shards,
        )
        self._spawn("process watch", self._watch_processes)
        self._spawn("poller", self.poller.run, self._stop)
        self._spawn("event tap", self.event_bus.drain, self._stop)
        self._spawn("sweeper", self._sweep_forever, sweeper, timeouts["SweeperFunction"])
        if self.options.persist:
            self._spawn("snapshots", self._save_while_running)
        state = {**asdict(self.info), "pid": os.getpid()}
        (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
        self._wrote_state = True
        return self.info

    def _write_sam_env(self, state_dir: Path) -> Path:
        """The --env-vars file for ``sam local invoke``, and the secrets it names stored as
        SecureStrings on the endpoint (:mod:`.sam_env`)."""
        env = self.function_env
        store_secrets(
            self.client("ssm"),
            login_id=env.get("BLASTENGINE_LOGIN_ID") or os.environ.get("BLASTENGINE_LOGIN_ID", ""),
            api_key=env.get("BLASTENGINE_API_KEY") or os.environ.get("BLASTENGINE_API_KEY", ""),
            webhook_secret=env["WEBHOOK_SECRET"],
        )
        path = state_dir / SAM_ENV_FILE
        write_sam_env(path, env, host=self.options.sam_host)
        return path

    def _worker(self, function: str, **chaos: Any) -> FunctionWorker:
        """A new execution environment of ``function``: a process of its own, started cold
        on its first invocation, stopped with the stack."""
        worker = FunctionWorker(
            environ={
                **os.environ,
                **self.function_env,
                LOG_FORMAT_VARIABLE: self.options.log_format,
                LOG_COLOUR_VARIABLE: "1" if self.options.log_colour else "0",
                **(
                    {"POWERTOOLS_LOG_LEVEL": self.options.log_level}
                    if self.options.log_level
                    else {}
                ),
            },
            function=function,
            **chaos,
        )
        self.workers.append(worker)
        return worker

    def _dispatch_invoker(self, timeout: float) -> Callable[[dict[str, Any]], Any]:
        """How the poller invokes the dispatcher: each concurrent invocation in an execution
        environment of its own, which chaos may kill (``kill_rate``)."""
        chaos = random.Random(self.options.seed)  # noqa: S311  (fault injection, not security)
        chaos_lock = threading.Lock()
        started = itertools.count()

        def environment() -> Callable[[dict[str, Any]], Any]:
            """A new execution environment (cold): what a concurrent invocation runs in. Each
            draws its own faults (the seed plus its number), as separate sandboxes would."""
            number = next(started)
            seed = None if self.options.seed is None else self.options.seed + number
            worker = self._worker(
                "DispatcherFunction",
                kill_rate=self.options.kill_rate,
                seed=seed,
                dynamodb_fault_rate=self.options.dynamodb_fault_rate,
            )
            return functools.partial(worker.invoke, timeout=timeout)

        environments = EnvironmentPool(environment)

        def invoke(event: dict[str, Any]) -> Any:
            response = environments.invoke(event)
            with chaos_lock:
                crash = chaos.random() < self.options.crash_rate
            if crash:
                # The worst moment to die: the batch's work is done, its response is lost,
                # and Lambda redelivers all of it.
                raise RuntimeError("injected crash after the handler ran (--crash-rate)")
            return response

        return invoke

    def stop(self) -> None:
        """Stop everything; safe to call twice, or after a failed start."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        if (
            self.snapshots is not None
            and self.dynamodb is not None
            and self.dynamodb.alive()
            and self.options.persist
        ):
            self._save()  # a clean stop keeps every last write
        self.snapshots = None
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.dynamodb is not None:
            self.dynamodb.stop()
            self.dynamodb = None
        if self._wrote_state:
            (self.options.state_dir / STATE_FILE).unlink(missing_ok=True)
            self._wrote_state = False
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the poller has delivered everything it has read, for a second on end
        (so that the echoes of the last batch have been read and delivered too)."""
        waited, calm = 0.0, 0
        while waited < timeout:
            if self.poller is not None and self.poller.consumers and self.poller.idle():
                calm += 1
                if calm >= 5:
                    return True
            else:
                calm = 0
            self._stop.wait(0.2)
            waited += 0.2
        return False

    def client(self, service: str) -> Any:
        """A new boto3 client (``dynamodb``, ``dynamodbstreams``) of this stack's endpoint."""
        assert self.dynamodb is not None, "the stack is not started"
        return _client(service, self.dynamodb.endpoint_url)

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _lock_state_dir(self) -> None:
        """One stack per state directory, for the stack's whole life: an exclusive lock the
        operating system releases when the process ends, however it ends."""
        state_dir = self.options.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        handle = (state_dir / LOCK_FILE).open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OSError(
                f"a local stack is already running on {state_dir}; stop it first "
                "or use another --state-dir"
            ) from None
        self._lock_file = handle

    def _save_while_running(self) -> None:
        """Save when the endpoint took writes since the last save. A save reads every table
        through the endpoint, which serves one request at a time, so under load the pause
        between saves grows to five times the last save's length: saving never takes more
        than a sixth of the endpoint's time, whatever the tables' size."""
        saved, pause = -1, SAVE_INTERVAL_SECONDS
        while not self._stop.wait(pause):
            assert self.dynamodb is not None
            writes = self.dynamodb.writes
            if writes != saved:
                started = time.monotonic()
                self._save()
                saved = writes
                pause = max(SAVE_INTERVAL_SECONDS, 5 * (time.monotonic() - started))

    def _watch_processes(self) -> None:
        """The endpoint's or the sandbox's process dying stops the stack, saying so, as a
        dead thread does: a stack half alive sends nothing and says nothing."""
        while not self._stop.wait(0.5):
            for name, part in (("DynamoDB endpoint", self.dynamodb), ("sandbox", self.sandbox)):
                if part is not None and not part.alive():
                    raise RuntimeError(f"the {name}'s process died ({part.describe_exit()})")

    def _save(self) -> None:
        from dispatcher.observability import logger

        assert self.snapshots is not None
        try:
            self.snapshots.save()
        except Exception:
            logger.exception("saving the local tables failed; the next save retries")

    def _sweep_forever(self, sweeper: FunctionWorker, timeout: float) -> None:
        from dispatcher.observability import logger

        runs = 0
        while not self._stop.wait(self.options.sweep_interval):
            runs += 1
            # The deployed sweeper catches bounces up hourly; here every sixtieth run.
            event = {"task": "reconcile"} if runs % RECONCILE_EVERY == 0 else {}
            try:
                sweeper.invoke(event, timeout=timeout)
            except Exception:
                logger.exception("sweeper run failed; the next one retries")

    def _shareable_env(self) -> dict[str, str]:
        """The function's environment without what the user gave as a secret: the sandbox's
        own fixed credentials are no secret, theirs for a real API (or AWS) are."""
        secret = {"WEBHOOK_SECRET"}
        if self.sandbox is None or self.function_env.get("BLASTENGINE_API_KEY") != SANDBOX_API_KEY:
            secret.add("BLASTENGINE_API_KEY")
        shared = {k: v for k, v in self.function_env.items() if k not in secret}
        # The local endpoint takes any credentials: never pass on the user's own AWS ones.
        return {**shared, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        """Run ``target`` on a thread; if it dies, the whole stack stops and says why, rather
        than staying up half alive (a sweeper logging on with no poller sends nothing)."""

        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:
                from dispatcher.observability import logger

                logger.critical(f"the {name} thread died; stopping the stack", exc_info=True)
                self.failure = f"the {name} thread died ({type(exc).__name__}: {exc})"
                self._stop.set()

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


class EnvironmentPool:
    """Lambda's execution environments: an invocation takes a free warm one, or starts a new
    (cold) one when every environment is busy, so concurrent batches never share one."""

    def __init__(self, start: Callable[[], Callable[[dict[str, Any]], Any]]) -> None:
        self._start = start
        self._free: list[Callable[[dict[str, Any]], Any]] = []
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            run = self._free.pop() if self._free else self._start()
        try:
            return run(event)
        finally:
            with self._lock:
                self._free.append(run)


def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106  (the local endpoint takes any)
    )


def _function_timeouts(template: dict[str, Any]) -> dict[str, float]:
    """Each function's Timeout from the template (or Globals), for the local contexts."""
    default = float(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    out = {}
    for name in ("DispatcherFunction", "SweeperFunction", "WebhookFunction"):
        props = template["Resources"][name]["Properties"]
        out[name] = float(props.get("Timeout", default))
    return out
