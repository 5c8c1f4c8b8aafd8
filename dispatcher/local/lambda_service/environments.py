"""Lambda's execution environments on the local stack: a process each, warm or cold, some killed.

Each concurrent invocation of a function runs in an environment of its own, a
:class:`~dispatcher.local.lambda_service.worker.FunctionWorker` process started cold on its first
invocation and kept warm for the next; chaos may kill one mid-batch (``kill_rate``), throttle
its DynamoDB calls, or lose a batch's response after the handler ran (``crash_rate``).
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from dispatcher.local.lambda_service.worker import (
    LOG_COLOUR_VARIABLE,
    LOG_FORMAT_VARIABLE,
    FunctionWorker,
)
from dispatcher.local.options import StackOptions

__all__ = ["EnvironmentPool", "Environments", "function_timeouts"]

#: An invocation: an event in, the function's response out.
Invoke = Callable[[dict[str, Any]], Any]


class EnvironmentPool:
    """An invocation takes a free warm environment, or starts a new (cold) one when every
    environment is busy, so concurrent batches never share one."""

    def __init__(self, start: Callable[[], Invoke]) -> None:
        self._start = start
        self._free: list[Invoke] = []
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            run = self._free.pop() if self._free else self._start()
        try:
            return run(event)
        finally:
            with self._lock:
                self._free.append(run)


class Environments:
    """Every execution environment the stack starts, from the functions' environment."""

    def __init__(self, options: StackOptions, function_env: Mapping[str, str]) -> None:
        self._options = options
        self._env = dict(function_env)
        self.workers: list[FunctionWorker] = []

    def worker(self, function: str, **chaos: Any) -> FunctionWorker:
        """A new execution environment of ``function``: a process of its own, started cold
        on its first invocation, stopped with the stack."""
        options = self._options
        worker = FunctionWorker(
            environ={
                **os.environ,
                **self._env,
                LOG_FORMAT_VARIABLE: options.log_format,
                LOG_COLOUR_VARIABLE: "1" if options.log_colour else "0",
                **({"POWERTOOLS_LOG_LEVEL": options.log_level} if options.log_level else {}),
            },
            function=function,
            **chaos,
        )
        self.workers.append(worker)
        return worker

    def pool(self, function: str, timeout: float) -> EnvironmentPool:
        """Environments of ``function`` as concurrent invocations need them."""
        return EnvironmentPool(
            lambda: functools.partial(self.worker(function).invoke, timeout=timeout)
        )

    def dispatch_invoker(self, timeout: float) -> Invoke:
        """How the poller invokes the dispatcher: each concurrent invocation in an execution
        environment of its own, which chaos may kill (``kill_rate``)."""
        options = self._options
        chaos = random.Random(options.seed)  # noqa: S311  (fault injection, not security)
        chaos_lock = threading.Lock()
        started = itertools.count()

        def environment() -> Invoke:
            """A new execution environment (cold): what a concurrent invocation runs in. Each
            draws its own faults (the seed plus its number), as separate sandboxes would."""
            number = next(started)
            seed = None if options.seed is None else options.seed + number
            worker = self.worker(
                "DispatcherFunction",
                kill_rate=options.kill_rate,
                seed=seed,
                dynamodb_fault_rate=options.dynamodb_fault_rate,
            )
            return functools.partial(worker.invoke, timeout=timeout)

        environments = EnvironmentPool(environment)

        def invoke(event: dict[str, Any]) -> Any:
            response = environments.invoke(event)
            with chaos_lock:
                crash = chaos.random() < options.crash_rate
            if crash:
                # The worst moment to die: the batch's work is done, its response is lost,
                # and Lambda redelivers all of it.
                raise RuntimeError("injected crash after the handler ran (--crash-rate)")
            return response

        return invoke

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


def function_timeouts(template: dict[str, Any]) -> dict[str, float]:
    """Each function's Timeout from the template (or Globals), for the local contexts."""
    default = float(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    out = {}
    for name in ("DispatcherFunction", "SweeperFunction", "WebhookFunction", "UnsubscribeFunction"):
        props = template["Resources"][name]["Properties"]
        out[name] = float(props.get("Timeout", default))
    return out
