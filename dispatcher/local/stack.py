"""The whole service on one machine: what ``dispatcher dev`` starts and stops.

- a DynamoDB endpoint with streams (moto's server) and the three tables from ``template.yaml``;
- the blastengine sandbox (or an external blastengine-compatible API);
- the poller: the stream's event source mapping, invoking the real
  ``dispatcher.handler.lambda_handler`` with the mapping's semantics (in this process, or
  with ``kill_rate`` in a process of its own that chaos can kill: :mod:`.worker`);
- the sweeper, calling ``dispatcher.sweeper.lambda_handler`` on a timer.

The handler and sweeper modules read their settings from the environment, exactly as in
Lambda; the stack sets that environment (``AWS_ENDPOINT_URL`` included) before importing
them. What the CLI needs to find the stack is written to ``local.json`` in the state
directory and removed on stop.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.local.chaos import throttle_some_calls
from dispatcher.local.context import LocalContext
from dispatcher.local.dynamodb_server import DynamoDBServer
from dispatcher.local.poller import FileFailureDestination, MappingConfig, StreamPoller
from dispatcher.local.sandbox import Faults, Sandbox
from dispatcher.local.tables import (
    HISTORY_TABLE,
    IDEMPOTENCY_TABLE,
    SEND_TABLE,
    create_tables,
    load_template,
)
from dispatcher.local.worker import FunctionWorker
from dispatcher.targets import default_state_dir

__all__ = ["STATE_FILE", "LocalStack", "ReadyInfo", "StackOptions", "default_state_dir"]

STATE_FILE = "local.json"
TABLE_NAMES = {
    SEND_TABLE: "mail-dispatcher-send",
    HISTORY_TABLE: "mail-dispatcher-history",
    IDEMPOTENCY_TABLE: "mail-dispatcher-idempotency",
}
SANDBOX_LOGIN_ID = "sandbox"
SANDBOX_API_KEY = "sandbox-api-key"  # the sandbox's own credentials, not a real account
_REGION = "us-east-1"


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

    def ready_line(self) -> str:
        keys = (
            "endpoint_url",
            "region",
            "send_table",
            "history_table",
            "idempotency_table",
            "provider_url",
        )
        return json.dumps({"event": "ready", **{k: getattr(self, k) for k in keys}})


class LocalStack:
    """Starts every part, in order, and stops them in reverse."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.dynamodb: DynamoDBServer | None = None
        self.sandbox: Sandbox | None = None
        self.poller: StreamPoller | None = None
        self.info: ReadyInfo | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_env: dict[str, str | None] = {}
        self._wrote_state = False
        self._one_function_at_a_time = threading.Lock()  # see _run_function
        self.mapping: MappingConfig | None = None
        self.worker: FunctionWorker | None = None

    def start(self) -> ReadyInfo:
        import boto3

        _refuse_if_running(self.options.state_dir / STATE_FILE)
        self.dynamodb = DynamoDBServer(port=self.options.port).start()
        endpoint = self.dynamodb.endpoint_url
        self._set_env(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_DEFAULT_REGION": _REGION,
                "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID") or "local",
                "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY") or "local",
            }
        )
        streams = create_tables(boto3.client("dynamodb"), TABLE_NAMES)

        if self.options.provider_url:
            provider_url = self.options.provider_url
            credentials: dict[str, str] = {}  # the user's BLASTENGINE_* environment
        else:
            self.sandbox = Sandbox(
                login_id=SANDBOX_LOGIN_ID,
                api_key=SANDBOX_API_KEY,
                faults=self.options.sandbox_faults,
            ).start()
            provider_url = self.sandbox.base_url
            credentials = {
                "BLASTENGINE_LOGIN_ID": SANDBOX_LOGIN_ID,
                "BLASTENGINE_API_KEY": SANDBOX_API_KEY,
            }
        self._set_env(
            {
                "SEND_TABLE_NAME": TABLE_NAMES[SEND_TABLE],
                "HISTORY_TABLE_NAME": TABLE_NAMES[HISTORY_TABLE],
                "IDEMPOTENCY_TABLE_NAME": TABLE_NAMES[IDEMPOTENCY_TABLE],
                "BLASTENGINE_BASE_URL": provider_url,
                "DEFAULT_FROM_EMAIL": os.environ.get("DEFAULT_FROM_EMAIL") or "noreply@example.com",
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED")
                or "true",
                **credentials,
            }
        )

        state_dir = self.options.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
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
        )

        handler = _fresh_import("dispatcher.handler")
        sweeper = _fresh_import("dispatcher.sweeper")
        template = load_template()
        timeouts = _function_timeouts(template)
        self.mapping = MappingConfig.from_template(template)

        chaos = random.Random(self.options.seed)  # noqa: S311  (fault injection, not security)
        if self.options.kill_rate:
            # Only a process of its own can be killed mid-batch and start cold again.
            self.worker = FunctionWorker(
                kill_rate=self.options.kill_rate,
                seed=self.options.seed,
                dynamodb_fault_rate=self.options.dynamodb_fault_rate,
            )
        elif self.options.dynamodb_fault_rate:
            throttle_some_calls(
                handler.dispatcher.store.client,
                self.options.dynamodb_fault_rate,
                random.Random(self.options.seed),  # noqa: S311  (fault injection)
            )

        def invoke(event: dict[str, Any]) -> Any:
            timeout = timeouts["DispatcherFunction"]
            if self.worker is not None:
                response = self.worker.invoke(event, timeout)
            else:
                context = LocalContext("DispatcherFunction", timeout)
                response = self._run_function(handler, event, context)
            if chaos.random() < self.options.crash_rate:
                # The worst moment to die: the batch's work is done, its response is lost,
                # and Lambda redelivers all of it.
                raise RuntimeError("injected crash after the handler ran (--crash-rate)")
            return response

        self.poller = StreamPoller(
            boto3.client("dynamodbstreams"),
            streams[SEND_TABLE],
            self.mapping,
            invoke,
            on_failure,
        )
        self._spawn("poller", self.poller.run, self._stop)
        self._spawn("sweeper", self._sweep_forever, sweeper, timeouts["SweeperFunction"])
        state = {**asdict(self.info), "pid": os.getpid()}
        (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
        self._wrote_state = True
        return self.info

    def stop(self) -> None:
        """Stop everything; safe to call twice, or after a failed start."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.dynamodb is not None:
            self.dynamodb.stop()
            self.dynamodb = None
        if self._wrote_state:
            (self.options.state_dir / STATE_FILE).unlink(missing_ok=True)
            self._wrote_state = False
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

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

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _sweep_forever(self, sweeper: Any, timeout: float) -> None:
        from dispatcher.observability import logger

        while not self._stop.wait(self.options.sweep_interval):
            try:
                self._run_function(sweeper, {}, LocalContext("SweeperFunction", timeout))
            except Exception:
                logger.exception("sweeper run failed; the next one retries")

    def _run_function(self, entry: Any, event: dict[str, Any], context: LocalContext) -> Any:
        """Invoke a Lambda entry module. Lambda runs each function in its own sandbox; here
        they share one process and one stderr, so invocations take turns (their log lines
        would interleave)."""
        with self._one_function_at_a_time:
            try:
                return entry.lambda_handler(event, context)
            finally:
                _drop_unflushed_metrics()

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value


def _drop_unflushed_metrics() -> None:
    """With POWERTOOLS_METRICS_DISABLED (the local default) Powertools keeps the metrics it
    did not print, and prints them anyway once 100 pile up; drop them after each run."""
    from dispatcher.observability import metrics

    metrics.clear_metrics()


def _refuse_if_running(path: Path) -> None:
    """One local stack per state directory: the CLI could not tell two apart."""
    try:
        pid = int(json.loads(path.read_text()).get("pid", 0))
    except (OSError, ValueError, AttributeError):
        return
    if pid and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # a stack that died without cleaning up
        except PermissionError:
            pass
        raise OSError(
            f"a local stack is already running (pid {pid}, {path}); stop it first "
            "or use another --state-dir"
        )


def _fresh_import(name: str) -> Any:
    """Import a Lambda entry module anew, so it reads the environment set just now."""
    import sys

    sys.modules.pop(name, None)
    package = sys.modules.get("dispatcher")
    if package is not None:
        package.__dict__.pop(name.rsplit(".", 1)[1], None)
    return importlib.import_module(name)


def _function_timeouts(template: dict[str, Any]) -> dict[str, float]:
    """Each function's Timeout from the template (or Globals), for the local contexts."""
    default = float(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    out = {}
    for name in ("DispatcherFunction", "SweeperFunction"):
        props = template["Resources"][name]["Properties"]
        out[name] = float(props.get("Timeout", default))
    return out
