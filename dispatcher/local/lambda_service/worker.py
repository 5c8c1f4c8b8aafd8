"""A function's execution environment: a process of its own, as Lambda runs each one.

Every function of the local stack runs here (the dispatcher, the sweeper, the webhook): one
process per concurrent invocation, started cold on first use (the function built from its
environment, as Lambda's runtime imports the handler) and warm after. Sharing the stack's
process, they shared one interpreter lock with DynamoDB and the poller, and the stack's
figures measured that lock (issue 21). ``dispatcher dev --kill-rate`` also kills a doomed
invocation with SIGKILL at one of the chaos kill points: the event source mapping sees a
function error and redelivers, and the next invocation starts a cold process.

The protocol is one JSON line each way on the child's stdin and stdout, the way Lambda's
runtime API hands over an event and takes back a response; the child's logs go to stderr,
the stack's own, human at a terminal (``DISPATCHER_LOG_FORMAT``) as the stack's are.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
from typing import Any

from dispatcher.local.child import end_by_closing_stdin, exit_description
from dispatcher.local.lambda_service.chaos import KillPlan, KillPoint

__all__ = [
    "FUNCTIONS",
    "LOG_COLOUR_VARIABLE",
    "LOG_FORMAT_VARIABLE",
    "FunctionCrashedError",
    "FunctionWorker",
]

#: How the stack tells its functions to log: ``human`` (short lines) or ``json`` (Lambda's).
LOG_FORMAT_VARIABLE = "DISPATCHER_LOG_FORMAT"
LOG_COLOUR_VARIABLE = "DISPATCHER_LOG_COLOUR"

#: Seconds allowed beyond the function's timeout for the process to answer.
_GRACE_SECONDS = 5.0


class FunctionCrashedError(RuntimeError):
    """The function's process died or overran its timeout; its invocation failed."""


class FunctionWorker:
    """Invokes the dispatcher in a child process, restarting it cold after a death.

    Which invocations die, and where, is drawn here from ``seed``, so a run does not depend
    on how often the child was restarted. Deaths cycle through every kill point: a doomed
    invocation that never reaches its point (a batch of echoes) leaves that point to the next.
    """

    def __init__(
        self,
        *,
        environ: dict[str, str],
        function: str = "DispatcherFunction",
        kill_rate: float = 0.0,
        seed: int | None = None,
        dynamodb_fault_rate: float = 0.0,
    ) -> None:
        if function not in FUNCTIONS:
            raise ValueError(f"no such function: {function!r}")
        self.function = function
        self._environ = environ
        self._kill_rate = kill_rate
        self._dynamodb_fault_rate = dynamodb_fault_rate
        self._rng = random.Random(seed)  # noqa: S311  (fault injection, not security)
        self._next_point = 0
        self._doomed = False
        self._process: subprocess.Popen[bytes] | None = None

    def invoke(self, event: dict[str, Any], timeout: float) -> Any:
        process = self._process if self._process and self._process.poll() is None else None
        if process is None:
            process = self._process = self._start()
        assert process.stdin is not None
        assert process.stdout is not None
        request = {"event": event, "timeout": timeout, "kill": self._plan()}
        try:
            process.stdin.write(json.dumps(request, default=str).encode() + b"\n")
            process.stdin.flush()
        except BrokenPipeError:
            raise self._died(process) from None
        ready, _, _ = select.select([process.stdout], [], [], timeout + _GRACE_SECONDS)
        line = process.stdout.readline() if ready else b""
        if not ready:
            process.kill()  # Lambda ends an invocation that overruns its timeout
        if not line:
            raise self._died(process)
        answer = json.loads(line)
        if "error" in answer:
            raise FunctionCrashedError(answer["error"])
        return answer["response"]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            end_by_closing_stdin(process)

    def _start(self) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "dispatcher.local.lambda_service.worker",
            "--function",
            self.function,
        ]
        if self._dynamodb_fault_rate:
            argv += ["--dynamodb-fault-rate", str(self._dynamodb_fault_rate)]
            argv += ["--seed", str(self._rng.randrange(2**32))]
        return subprocess.Popen(  # noqa: S603
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._environ,
            start_new_session=True,  # a Ctrl-C is the stack's to handle, not each function's
        )

    def _plan(self) -> dict[str, Any] | None:
        self._doomed = self._rng.random() < self._kill_rate
        if not self._doomed:
            return None
        points = list(KillPoint)
        return KillPlan.draw(self._rng, points[self._next_point % len(points)]).to_json()

    def _died(self, process: subprocess.Popen[bytes]) -> FunctionCrashedError:
        code = process.wait()
        self._process = None
        if self._doomed:
            self._next_point += 1
        return FunctionCrashedError(
            f"the function's process died ({exit_description(code)}); restarting cold"
        )


#: The stack's functions, by their template names.
FUNCTIONS = ("DispatcherFunction", "SweeperFunction", "WebhookFunction", "UnsubscribeFunction")


def _build(name: str, client: Any) -> Any:
    """The function ``name``, built as its Lambda entry point builds it, on ``client``."""
    from dispatcher.config.settings import Settings

    settings = Settings.from_env()
    if name == "SweeperFunction":
        from dispatcher.bounces.catch_up import Reconciler
        from dispatcher.flow.sweep import Sweeper
        from dispatcher.functions import sweep_function
        from dispatcher.tracking.mail_log import MailLogPoller

        return sweep_function(
            Sweeper.from_settings(settings, dynamodb_client=client),
            reconciler=Reconciler.from_settings(settings, dynamodb_client=client),
            mail_log=MailLogPoller.from_settings(settings, dynamodb_client=client),
            publish_metrics=False,
        )
    if name == "UnsubscribeFunction":
        from dispatcher.functions import url_function
        from dispatcher.unsubscribes.endpoint import app_from_settings

        return url_function(
            app_from_settings(settings, dynamodb_client=client), publish_metrics=False
        )
    if name == "WebhookFunction":
        from dispatcher.bounces.webhook import receiver_from_settings
        from dispatcher.functions import webhook_function

        return webhook_function(
            receiver_from_settings(settings, dynamodb_client=client), publish_metrics=False
        )
    from dispatcher.flow.dispatch import Dispatcher
    from dispatcher.functions import dispatch_function

    return dispatch_function(
        Dispatcher.from_settings(settings, dynamodb_client=client), publish_metrics=False
    )


def _serve(argv: list[str]) -> int:
    """The child: build the function from its environment (a cold start, as Lambda's
    runtime imports the handler), then answer invocations until EOF."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m dispatcher.local.lambda_service.worker")
    parser.add_argument("--function", choices=FUNCTIONS, default="DispatcherFunction")
    parser.add_argument("--dynamodb-fault-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack ends us by closing stdin

    # stdout is the protocol's; anything the function prints goes to stderr with its logs.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import boto3

    from dispatcher.config.settings import Settings
    from dispatcher.local.lambda_service.chaos import KillSwitch, throttle_some_calls
    from dispatcher.local.lambda_service.context import LocalContext
    from dispatcher.support.observability import logger

    if os.environ.get(LOG_FORMAT_VARIABLE) == "human":
        from dispatcher.local.terminal import use_human_logs

        use_human_logs(logger, colour=os.environ.get(LOG_COLOUR_VARIABLE) == "1")
    settings = Settings.from_env()
    client = boto3.client("dynamodb")  # AWS_ENDPOINT_URL: the stack's, from the environment
    switch = KillSwitch(
        send_table=settings.send_table_name, idempotency_table=settings.idempotency_table_name
    )
    switch.install(client)
    if args.dynamodb_fault_rate:
        rng = random.Random(args.seed)  # noqa: S311  (fault injection, not security)
        throttle_some_calls(client, args.dynamodb_fault_rate, rng)
    function = _build(args.function, client)

    for line in sys.stdin:
        request = json.loads(line)
        plan = request.get("kill")
        switch.arm(KillPlan.from_json(plan) if plan else None)
        context = LocalContext(args.function, float(request["timeout"]))
        try:
            answer: dict[str, Any] = {"response": function(request["event"], context)}
        except Exception as exc:  # a function error, reported as Lambda's runtime would
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            switch.arm(None)
        replies.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
