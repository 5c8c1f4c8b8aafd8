"""The whole service on one machine: what ``dispatcher dev`` starts and stops.

- a DynamoDB endpoint with streams (moto's server) and the three tables from ``template.yaml``;
- the blastengine sandbox (or an external blastengine-compatible API);
- the poller: the stream's event source mapping, invoking the dispatcher function with the
  mapping's semantics, over ``shards`` virtual shards and the template's
  ``ParallelizationFactor``, each concurrent invocation in an execution environment of its
  own (AWS's runtime interface client in a process, which chaos can kill:
  :mod:`.lambda_service.execution_environment`); every environment shares the account's one
  rate limit;
- the sweeper function on a timer.

Every function is its Lambda entry module, the handler ``template.yaml`` names, run by AWS's
runtime interface client with the environment a deployed function would have
(:attr:`LocalStack.function_env`, whose AWS endpoint is this stack's); nothing here touches
the process's own environment. What the CLI needs to find the stack is written to
``local.json`` in the state directory and removed on stop.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dispatcher.local.dynamodb.persistence import (
    SAVE_INTERVAL_SECONDS,
    SNAPSHOT_FILE,
    TableSnapshots,
)
from dispatcher.local.dynamodb.process import DynamoDBProcess
from dispatcher.local.dynamodb.tables import (
    BOUNCE_TABLE,
    HISTORY_TABLE,
    IDEMPOTENCY_TABLE,
    SEND_TABLE,
    SENT_MAIL_TABLE,
    SUPPRESSION_TABLE,
    TEMPLATES_TABLE,
    create_bucket,
    load_template,
)
from dispatcher.local.event_bus import EVENTS_FILE, LocalEventBus
from dispatcher.local.function_env import (
    ATTACHMENTS_BUCKET,
    REGION,
    TABLE_NAMES,
    function_environment,
    shareable_environment,
)
from dispatcher.local.lambda_service.environments import Environments, function_specs
from dispatcher.local.lambda_service.execution_environment import ExecutionEnvironment
from dispatcher.local.lambda_service.function_url import FunctionUrlServer
from dispatcher.local.lambda_service.mapping import FileFailureDestination, MappingConfig
from dispatcher.local.lambda_service.poller import StreamPoller
from dispatcher.local.options import STATE_FILE, ReadyInfo, StackOptions, default_state_dir
from dispatcher.local.sam_env import SAM_ENV_FILE, store_secrets, write_sam_env
from dispatcher.local.sandbox.model import SANDBOX_API_KEY, SANDBOX_LOGIN_ID
from dispatcher.local.sandbox.process import SandboxProcess

if TYPE_CHECKING:
    from dispatcher.config.settings import Settings

__all__ = ["STATE_FILE", "LocalStack", "ReadyInfo", "StackOptions", "default_state_dir"]

#: Seconds a stop waits for the batches and sweeps under way before it ends their environments.
GRACEFUL_STOP_SECONDS = 10.0

#: Sweeps between two catch-ups from the sandbox's delivery logs.
RECONCILE_EVERY = 60
LOCK_FILE = "lock"


#: The local stack's unsubscribe signing key, in its state directory.
UNSUBSCRIBE_KEY_FILE = "unsubscribe.key"


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
        self.unsubscribe: FunctionUrlServer | None = None
        self._unsubscribes: Any = None
        self._lock_file: IO[bytes] | None = None
        self._wrote_state = False
        self.mapping: MappingConfig | None = None
        self.environments: Environments | None = None

    def start(self) -> ReadyInfo:
        """Start the parts in the order they depend on one another: DynamoDB and the
        tables, the provider, the functions' environment, then the Lambda service (the
        poller, the sweeper, the webhook's Function URL). Returns the ready line's facts."""
        state_dir = self.options.state_dir
        self._lock_state_dir()
        self.dynamodb = DynamoDBProcess(port=self.options.port).start()
        streams, bus_name = self._start_tables(state_dir)
        provider_url, credentials = self._start_provider()
        # bound now, so the dispatcher's environment can name its URL; it answers once the
        # function's environments are up
        self.unsubscribe = FunctionUrlServer(self._invoke_unsubscribe)
        self.function_env, settings = function_environment(
            self.options,
            endpoint=self.dynamodb.endpoint_url,
            provider_url=provider_url,
            credentials=credentials,
            bus_name=bus_name,
            sandboxed=self.sandbox is not None,
            unsubscribe_url=self.unsubscribe.url,
            unsubscribe_keys=_unsubscribe_keys(state_dir),
        )
        self.environments = Environments(
            self.options, self.function_env, function_specs(load_template())
        )
        self._prepare_for(settings)
        on_failure = FileFailureDestination(state_dir / "on-failure.jsonl")
        self.info = self._ready_info(state_dir, streams, provider_url, on_failure, bus_name)
        self._start_functions(streams[SEND_TABLE], on_failure)
        return self.publish(self.info)

    def publish(self, info: ReadyInfo) -> ReadyInfo:
        """Keep ``info`` as the stack's and write it to the state file, where the CLI and
        ``dispatcher env`` find the stack (again when the console has come up beside it)."""
        self.info = info
        state = {**asdict(info), "pid": os.getpid()}
        (self.options.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
        self._wrote_state = True
        return info

    def _start_tables(self, state_dir: Path) -> tuple[dict[str, str], str]:
        """The tables (restored from the last run's snapshot unless fresh), the attachments
        bucket and the event bus; returns the tables' stream ARNs and the bus's name."""
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
        return streams, self.event_bus.create()

    def _start_provider(self) -> tuple[str, dict[str, str]]:
        """The sandbox, unless the options name a provider's URL; returns where mail goes
        and the credentials the functions log in with there."""
        if self.options.provider_url:
            return self.options.provider_url, {}  # the user's BLASTENGINE_* environment
        # The sandbox logs in as blastengine does: with the credentials in the environment
        # when both are set, else with its own fixed ones (README).
        env_id = os.environ.get("BLASTENGINE_LOGIN_ID")
        env_key = os.environ.get("BLASTENGINE_API_KEY")
        login_id, api_key = (
            (env_id, env_key) if env_id and env_key else (SANDBOX_LOGIN_ID, SANDBOX_API_KEY)
        )
        self.sandbox = SandboxProcess(
            login_id=login_id, api_key=api_key, faults=self.options.sandbox_faults
        ).start()
        credentials = {"BLASTENGINE_LOGIN_ID": login_id, "BLASTENGINE_API_KEY": api_key}
        return self.sandbox.base_url, credentials

    def _prepare_for(self, settings: Settings) -> None:
        """What the functions' settings ask of the stack: SES's verified sender, sandbox
        hangs that outlast the function's request timeout."""
        if "ses" in settings.providers:
            # SES sends only from verified identities: the default sender's whole domain.
            domain = settings.default_from_email.rpartition("@")[2]
            self.client("sesv2").create_email_identity(EmailIdentity=domain)
        faults = self.options.sandbox_faults
        if self.sandbox is not None and (faults.timeout or faults.accepted_timeout):
            # A hang must outlast the function's request timeout to be one.
            hang = max(faults.hang_seconds, settings.request_timeout_seconds + 1)
            self.sandbox.set_faults(replace(faults, hang_seconds=hang))

    def _ready_info(
        self,
        state_dir: Path,
        streams: dict[str, str],
        provider_url: str,
        on_failure: FileFailureDestination,
        bus_name: str,
    ) -> ReadyInfo:
        assert self.dynamodb is not None
        assert self.event_bus is not None
        return ReadyInfo(
            endpoint_url=self.dynamodb.endpoint_url,
            region=REGION,
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
            sent_mail_table=TABLE_NAMES[SENT_MAIL_TABLE],
            templates_table=TABLE_NAMES[TEMPLATES_TABLE],
            event_bus=bus_name,
            events_file=str(self.event_bus.path.resolve()),
            sam_env_file=str(self._write_sam_env(state_dir).resolve()),
            env=shareable_environment(self.function_env, sandboxed=self.sandbox is not None),
        )

    def _start_functions(self, stream_arn: str, on_failure: FileFailureDestination) -> None:
        """The Lambda service's part: the webhook behind its Function URL, the stream's
        poller invoking the dispatcher, the sweeper on its schedule, the event tap."""
        assert self.environments is not None
        assert self.event_bus is not None
        assert self.info is not None
        template = load_template()
        self.mapping = replace(
            MappingConfig.from_template(template), **self.options.mapping_overrides
        )
        invoke = self.environments.dispatch_invoker()
        sweeper = self.environments.environment("SweeperFunction")
        webhooks = self.environments.pool("WebhookFunction")
        self._unsubscribes = self.environments.pool("UnsubscribeFunction")
        assert self.unsubscribe is not None
        self.unsubscribe.start()
        self.webhook = FunctionUrlServer(webhooks.invoke).start()
        webhook_url = f"{self.webhook.url}hooks/{self.function_env['WEBHOOK_SECRET']}"
        self.info = replace(
            self.info, webhook_url=webhook_url, unsubscribe_url=self.unsubscribe.url
        )
        if self.sandbox is not None:
            self.sandbox.webhook_url = webhook_url  # it reports bounces as blastengine would
        self.poller = StreamPoller(
            self.client("dynamodbstreams"),
            stream_arn,
            self.mapping,
            invoke,
            on_failure,
            shards=self.options.shards,
        )
        self._spawn("process watch", self._watch_processes)
        self._spawn("poller", self.poller.run, self._stop)
        self._spawn("event tap", self.event_bus.drain, self._stop)
        self._spawn("sweeper", self._sweep_forever, sweeper)
        if self.options.persist:
            self._spawn("snapshots", self._save_while_running)

    def _write_sam_env(self, state_dir: Path) -> Path:
        """The --env-vars file for ``sam local invoke``, and the secrets it names stored as
        SecureStrings on the endpoint (:mod:`.sam_env`)."""
        env = self.function_env
        store_secrets(
            self.client("ssm"),
            login_id=env.get("BLASTENGINE_LOGIN_ID") or os.environ.get("BLASTENGINE_LOGIN_ID", ""),
            api_key=env.get("BLASTENGINE_API_KEY") or os.environ.get("BLASTENGINE_API_KEY", ""),
            webhook_secret=env["WEBHOOK_SECRET"],
            unsubscribe_keys=env.get("UNSUBSCRIBE_KEYS", ""),
        )
        path = state_dir / SAM_ENV_FILE
        write_sam_env(path, env, host=self.options.sam_host)
        return path

    def stop(self) -> None:
        """Stop everything; safe to call twice, or after a failed start."""
        self._stop.set()
        # A batch or a sweep under way may finish, for a few seconds in all; then what still
        # waits on a function has its environment ended, as Lambda ends one, and returns.
        deadline = time.monotonic() + GRACEFUL_STOP_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.environments is not None and any(t.is_alive() for t in self._threads):
            self.environments.stop()
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
        if self.environments is not None:
            self.environments.stop()
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook = None
        if self.unsubscribe is not None:
            self.unsubscribe.stop()
            self.unsubscribe = None
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
        from dispatcher.support.observability import logger

        assert self.snapshots is not None
        try:
            self.snapshots.save()
        except Exception:
            logger.exception("saving the local tables failed; the next save retries")

    def _sweep_forever(self, sweeper: ExecutionEnvironment) -> None:
        from dispatcher.support.observability import logger

        runs = 0
        while not self._stop.wait(self.options.sweep_interval):
            runs += 1
            # The deployed sweeper catches bounces up hourly; here every sixtieth run.
            event = {"task": "reconcile"} if runs % RECONCILE_EVERY == 0 else {}
            try:
                sweeper.invoke(event)
            except Exception:
                logger.exception("sweeper run failed; the next one retries")

    def _invoke_unsubscribe(self, event: dict[str, Any]) -> Any:
        """The unsubscribe endpoint's requests, to its function's environments."""
        if self._unsubscribes is None:
            raise RuntimeError("the unsubscribe function is not up yet")
        return self._unsubscribes.invoke(event)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        """Run ``target`` on a thread; if it dies, the whole stack stops and says why, rather
        than staying up half alive (a sweeper logging on with no poller sends nothing)."""

        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:
                from dispatcher.support.observability import logger

                logger.critical(f"the {name} thread died; stopping the stack", exc_info=True)
                self.failure = f"the {name} thread died ({type(exc).__name__}: {exc})"
                self._stop.set()

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106  (the local endpoint takes any)
    )


def _unsubscribe_keys(state_dir: Path) -> str:
    """The local stack's unsubscribe signing key, kept in its state directory so that the
    links in mail it sent before a restart still work."""
    path = state_dir / UNSUBSCRIBE_KEY_FILE
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()
