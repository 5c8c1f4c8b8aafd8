"""A function's execution environment: AWS's runtime interface client in a process of its own.

Every function of the local stack runs here (the dispatcher, the sweeper, the webhook, the
unsubscribe endpoint): one process per concurrent invocation, started cold on first use and
warm after, running ``awslambdaric`` on the handler the template names (:mod:`.bootstrap`)
against a Runtime API of its own (:mod:`.runtime_api`). So the context, the deadline, the
error's shape and the init phase are Lambda's own, and the template's ``Timeout`` and
``MemorySize`` are enforced as Lambda enforces them: an invocation past its timeout, or a
process past its memory, is ended (SIGKILL) and the invocation fails with Lambda's error; the
next one starts cold. ``dispatcher dev --kill-rate`` also kills a doomed invocation at one of
the chaos kill points: the event source mapping sees a function error and redelivers.

The process's stdout (the runtime client's log lines and the function's) and stderr go to
the stack's stderr, one log stream, human at a terminal (``DISPATCHER_LOG_FORMAT``).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.local.child import end_by_closing_stdin, exit_description
from dispatcher.local.lambda_service.bootstrap import (
    FAULT_RATE_VARIABLE,
    FAULT_SEED_VARIABLE,
    KILLS_VARIABLE,
    LOG_COLOUR_VARIABLE,
    LOG_FORMAT_VARIABLE,
)
from dispatcher.local.lambda_service.chaos import KillPlan, KillPoint
from dispatcher.local.lambda_service.runtime_api import Invocation, RuntimeApi

__all__ = [
    "FUNCTIONS",
    "LOG_COLOUR_VARIABLE",
    "LOG_FORMAT_VARIABLE",
    "ExecutionEnvironment",
    "FunctionError",
    "FunctionSpec",
    "function_specs",
]

#: The stack's functions, by their template names.
FUNCTIONS = ("DispatcherFunction", "SweeperFunction", "WebhookFunction", "UnsubscribeFunction")
#: Seconds between looks at the process (alive? within its memory?) while it works.
_WATCH_SECONDS = 0.1
#: The account and region of the functions' ARNs, as ``sam local`` uses them.
_ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says of one function: what Lambda runs, and its limits."""

    name: str
    handler: str
    timeout: float = 3.0
    memory_mb: int = 128


def function_specs(template: dict[str, Any]) -> dict[str, FunctionSpec]:
    """Each of :data:`FUNCTIONS` as the template declares it (``Globals`` filled in)."""
    defaults = template.get("Globals", {}).get("Function", {})
    specs = {}
    for name in FUNCTIONS:
        props = {**defaults, **template["Resources"][name]["Properties"]}
        specs[name] = FunctionSpec(
            name,
            str(props["Handler"]),
            float(props.get("Timeout", 3)),
            int(props.get("MemorySize", 128)),
        )
    return specs


class FunctionError(RuntimeError):
    """The invocation failed, as Lambda reports it: ``payload`` is Lambda's error shape
    (``errorType``, ``errorMessage``, and the function's ``stackTrace`` when it raised)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.error_type = str(payload.get("errorType", "Runtime.Unknown"))
        super().__init__(f"{self.error_type}: {payload.get('errorMessage', '')}")


class ExecutionEnvironment:
    """One environment of ``spec``'s function; invoked one event at a time.

    Which invocations die, and where, is drawn here from ``seed``, so a run does not depend
    on how often the process was restarted. Deaths cycle through every kill point: a doomed
    invocation that never reaches its point (a batch of echoes) leaves that point to the next.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        environ: dict[str, str],
        kill_rate: float = 0.0,
        seed: int | None = None,
        dynamodb_fault_rate: float = 0.0,
    ) -> None:
        self.spec = spec
        self._environ = environ
        self._kill_rate = kill_rate
        self._dynamodb_fault_rate = dynamodb_fault_rate
        self._rng = random.Random(seed)  # noqa: S311  (fault injection, not security)
        self._next_point = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._api: RuntimeApi | None = None
        #: Cold starts so far (the first invocation's, and each after the process ended).
        self.cold_starts = 0

    def invoke(self, event: dict[str, Any]) -> Any:
        """The function's response to ``event``; raises :class:`FunctionError` as Lambda
        reports a failed invocation."""
        api, process = self._running()
        plan = self._plan()
        invocation = api.submit(
            Invocation(
                json.dumps(event, default=str).encode(),
                deadline_ms=int((time.time() + self.spec.timeout) * 1000),
                function_arn=_ARN + self.spec.name,
                kill_plan=plan.to_json() if plan else None,
            )
        )
        failure = self._watch(invocation, api, process)
        if failure is not None:
            self._end()
            if plan is not None:
                self._next_point += 1
            raise FunctionError({**failure, "requestId": invocation.request_id})
        assert invocation.outcome is not None
        if invocation.outcome.kind == "error":
            raise FunctionError({"requestId": invocation.request_id, **invocation.outcome.error()})
        body = invocation.outcome.body
        return json.loads(body) if body else None

    def stop(self) -> None:
        self._end()

    def _running(self) -> tuple[RuntimeApi, subprocess.Popen[bytes]]:
        """The environment's process and API; a cold start when there is none."""
        if self._process is not None and self._process.poll() is None and self._api is not None:
            return self._api, self._process
        self._end()
        api = self._api = RuntimeApi().start()
        self.cold_starts += 1
        self._process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "dispatcher.local.lambda_service.bootstrap", self.spec.handler],
            stdin=subprocess.PIPE,
            stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else None,
            env=self._lambda_environment(api),
            cwd=Path.cwd(),
            start_new_session=True,  # a Ctrl-C is the stack's to handle, not each function's
        )
        return api, self._process

    def _lambda_environment(self, api: RuntimeApi) -> dict[str, str]:
        """The function's environment, and what Lambda sets beside it."""
        name = self.spec.name
        env = {
            **self._environ,
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{name}/{self.cold_starts}",
            "_HANDLER": self.spec.handler,
            "LAMBDA_TASK_ROOT": str(Path.cwd()),
        }
        if self._kill_rate:
            env[KILLS_VARIABLE] = "1"
        if self._dynamodb_fault_rate:
            env[FAULT_RATE_VARIABLE] = str(self._dynamodb_fault_rate)
            env[FAULT_SEED_VARIABLE] = str(self._rng.randrange(2**32))
        return env

    def _watch(
        self, invocation: Invocation, api: RuntimeApi, process: subprocess.Popen[bytes]
    ) -> dict[str, str] | None:
        """Wait for the outcome; Lambda's error when the process failed it first."""
        deadline = time.monotonic() + self.spec.timeout
        request = invocation.request_id
        while not invocation.done.wait(min(_WATCH_SECONDS, max(0.0, deadline - time.monotonic()))):
            if api.init_error is not None:
                return api.init_error.error()
            code = process.poll()
            if code is not None:
                return {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {request} Error: {_exited(code)}",
                }
            if _resident_mb(process.pid) > self.spec.memory_mb:
                return {
                    "errorType": "Runtime.OutOfMemory",
                    "errorMessage": f"RequestId: {request} Error: {_exited(-signal.SIGKILL)} "
                    f"(over its {self.spec.memory_mb} MB)",
                }
            if time.monotonic() >= deadline:
                return {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request} Error: Task timed out after "
                    f"{self.spec.timeout:.2f} seconds",
                }
        return None

    def _end(self) -> None:
        process, self._process = self._process, None
        api, self._api = self._api, None
        if process is not None:
            if process.poll() is None:
                process.kill()  # as Lambda ends an environment: no clean-up, no goodbye
            end_by_closing_stdin(process)
        if api is not None:
            api.stop()

    def _plan(self) -> KillPlan | None:
        if not self._kill_rate or self._rng.random() >= self._kill_rate:
            return None
        points = list(KillPoint)
        return KillPlan.draw(self._rng, points[self._next_point % len(points)])


def _exited(code: int) -> str:
    """A runtime's end in Lambda's words: ``Runtime exited with error: signal: killed``."""
    if code == -signal.SIGKILL:
        return "Runtime exited with error: signal: killed"
    if code < 0:
        return f"Runtime exited with error: signal: {-code}"
    return f"Runtime exited with error: {exit_description(code)}"


def _resident_mb(pid: int) -> float:
    """The process's resident memory in MB (Linux's /proc; 0 where there is none)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
