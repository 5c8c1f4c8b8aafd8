"""What running the handler through AWS's runtime interface client costs an invocation, against
the stack's old worker protocol (one JSON line each way on a child's stdin and stdout).

Both run the same trivial handler (:func:`echo`) in a warm child process, on the same event (a
batch of 100 stream records, as the dispatcher is given), side by side in one run: the ratio
is the figure, and the difference per invocation over a batch's time at R is what the runtime
client can take from the end-to-end figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from dispatcher.local.lambda_service.execution_environment import (
    ExecutionEnvironment,
    FunctionSpec,
)

#: The old protocol's child: read a line, call the handler, write a line (as it was).
_PIPE_WORKER = """
import json, sys
from bench.runtime import echo
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.write(json.dumps({"response": echo(request["event"], None)}) + "\\n")
    sys.stdout.flush()
"""


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The partial batch response of a batch that all went well."""
    return {"batchItemFailures": [], "records": len(event.get("Records", []))}


def _event() -> dict[str, Any]:
    record = {
        "eventID": "0" * 32,
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"id": {"S": "row"}},
            "NewImage": {
                "id": {"S": "row"},
                "to": {"S": "someone@example.com"},
                "subject": {"S": "Your order has shipped"},
                "text": {"S": "x" * 600},
            },
            "SequenceNumber": "1" * 21,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return {"Records": [record] * 100}


def runtime_cost(invocations: int = 200) -> dict[str, Any]:
    event = _event()
    environment = ExecutionEnvironment(
        FunctionSpec("BenchFunction", "bench.runtime.echo", 30, 512),
        environ={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    pipe = subprocess.Popen(
        [sys.executable, "-c", _PIPE_WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        text=True,
    )
    assert pipe.stdin is not None
    assert pipe.stdout is not None

    def through_pipe() -> None:
        pipe.stdin.write(json.dumps({"event": event, "timeout": 30}) + "\n")  # type: ignore[union-attr]
        pipe.stdin.flush()  # type: ignore[union-attr]
        json.loads(pipe.stdout.readline())  # type: ignore[union-attr]

    def through_runtime_client() -> None:
        environment.invoke(event)

    try:
        through_pipe(), through_runtime_client()  # warm both
        times: dict[str, list[float]] = {"pipe": [], "ric": []}
        for _ in range(invocations):  # interleaved, so the machine's noise hits both alike
            for name, call in (("pipe", through_pipe), ("ric", through_runtime_client)):
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
    finally:
        environment.stop()
        pipe.stdin.close()
        pipe.wait(timeout=10)
    pipe_ms = statistics.median(times["pipe"]) * 1000
    ric_ms = statistics.median(times["ric"]) * 1000
    return {
        "invocations": invocations,
        "pipe_worker_ms": round(pipe_ms, 3),
        "runtime_client_ms": round(ric_ms, 3),
        "ratio": round(ric_ms / pipe_ms, 2),
        "extra_ms": round(ric_ms - pipe_ms, 3),
    }


if __name__ == "__main__":
    print(json.dumps(runtime_cost(), indent=2))
