"""What an execution environment's process runs: AWS's runtime interface client, ``awslambdaric``,
with the function's handler string from ``template.yaml``, as Lambda's container images run it.

``python -m dispatcher.local.lambda_service.bootstrap HANDLER`` prepares the process the way an
``AWS_LAMBDA_EXEC_WRAPPER`` script prepares a runtime, then hands it to ``awslambdaric``, which
imports the handler (the init phase: a bad setting fails it, reported to the Runtime API's
init error), reads each invocation from the Runtime API (``AWS_LAMBDA_RUNTIME_API``), builds
the context from its headers, and posts the response or the error in Lambda's shape. What the
wrapper adds is the local stack's only: the terminal's log format, the chaos flags' faults on
every DynamoDB client the function makes (hooked on boto3's default session before the
handler's import creates one), and an exit when the stack goes (its stdin closes).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import urllib.request
from typing import Any

__all__ = [
    "FAULT_RATE_VARIABLE",
    "FAULT_SEED_VARIABLE",
    "KILLS_VARIABLE",
    "LOG_COLOUR_VARIABLE",
    "LOG_FORMAT_VARIABLE",
    "main",
]

#: How the stack tells its functions to log: ``human`` (short lines) or ``json`` (Lambda's).
LOG_FORMAT_VARIABLE = "DISPATCHER_LOG_FORMAT"
LOG_COLOUR_VARIABLE = "DISPATCHER_LOG_COLOUR"

#: ``1``: the stack may doom an invocation; the plan is asked of the Runtime API.
KILLS_VARIABLE = "DISPATCHER_CHAOS_KILLS"
#: The share of the function's DynamoDB calls that fail (``--dynamodb-fault-rate``).
FAULT_RATE_VARIABLE = "DISPATCHER_CHAOS_DYNAMODB_FAULT_RATE"
FAULT_SEED_VARIABLE = "DISPATCHER_CHAOS_SEED"
#: Where the stack's Runtime API tells the current invocation's kill plan (not Lambda's).
KILL_PLAN_PATH = "/2018-06-01/local/kill-plan"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m dispatcher.local.lambda_service.bootstrap HANDLER\n")
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the stack's to handle
    _exit_when_stdin_closes()
    _terminal_logs()
    _faults()
    from awslambdaric.__main__ import main as run_runtime  # type: ignore[import-untyped]

    run_runtime(["awslambdaric", argv[0]])
    return 0


def _exit_when_stdin_closes() -> None:
    """However the stack ends, ``kill -9`` included, its end of the pipe closes: go too."""

    def watch() -> None:
        while sys.stdin.buffer.read(1024):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="stack watch", daemon=True).start()


def _terminal_logs() -> None:
    if os.environ.get(LOG_FORMAT_VARIABLE) == "human":
        from dispatcher.local.terminal import use_human_logs
        from dispatcher.support.observability import logger

        use_human_logs(logger, colour=os.environ.get(LOG_COLOUR_VARIABLE) == "1")
        # Made before the runtime client's root handler (Powertools filters the root's
        # handlers it finds when the logger is made, as on Lambda): keep its lines off it.
        logger._logger.propagate = False


def _faults() -> None:
    """The chaos flags' faults, on every DynamoDB client made from boto3's default session."""
    kills = os.environ.get(KILLS_VARIABLE) == "1"
    rate = float(os.environ.get(FAULT_RATE_VARIABLE) or 0)
    if not kills and not rate:
        return
    import boto3

    from dispatcher.local.lambda_service.chaos import KillPlan, KillSwitch, throttle_some_calls

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    events = boto3.DEFAULT_SESSION.events
    if rate:
        seed = os.environ.get(FAULT_SEED_VARIABLE)
        rng = random.Random(int(seed) if seed else None)  # noqa: S311  (faults, not security)
        throttle_some_calls(events, rate, rng)
    if kills:
        switch = KillSwitch(
            send_table=os.environ.get("SEND_TABLE_NAME", ""),
            idempotency_table=os.environ.get("IDEMPOTENCY_TABLE_NAME", ""),
        )
        seen: dict[str, str | None] = {"trace": None}

        def follow_the_invocation(**_: Any) -> None:
            """A new invocation (its trace id, set by the runtime client): arm its plan."""
            trace = os.environ.get("_X_AMZN_TRACE_ID")
            if trace != seen["trace"]:
                seen["trace"] = trace
                plan = _kill_plan()
                switch.arm(KillPlan.from_json(plan) if plan else None)

        events.register("before-parameter-build.dynamodb.*", follow_the_invocation)
        switch.install(events)


def _kill_plan() -> dict[str, Any] | None:
    url = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}{KILL_PLAN_PATH}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        plan = json.loads(answer.read())
    return plan if isinstance(plan, dict) else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
