"""Lambda's execution environments on the local stack: a process each, warm or cold, some killed.

Each concurrent invocation of a function runs in an environment of its own, an
:class:`~dispatcher.local.lambda_service.execution_environment.ExecutionEnvironment` (AWS's
runtime interface client in a process) started cold on its first invocation and kept warm for
the next; chaos may kill one mid-batch (``kill_rate``), throttle
its DynamoDB calls, or lose a batch's response after the handler ran (``crash_rate``).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from dispatcher.local.lambda_service.execution_environment import (
    FUNCTIONS,
    LOG_COLOUR_VARIABLE,
    LOG_FORMAT_VARIABLE,
    ExecutionEnvironment,
    FunctionSpec,
    function_specs,
)
from dispatcher.local.options import StackOptions

__all__ = ["EnvironmentPool", "Environments", "function_specs"]

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
    """Every execution environment the stack starts, from the functions' environment and
    the template's declarations (handler, timeout, memory)."""

    def __init__(
        self,
        options: StackOptions,
        function_env: Mapping[str, str],
        specs: Mapping[str, FunctionSpec],
    ) -> None:
        self._options = options
        self._env = dict(function_env)
        self.specs = dict(specs)
        self.environments: list[ExecutionEnvironment] = []
        self._lock = threading.Lock()

    def environment(self, function: str, **chaos: Any) -> ExecutionEnvironment:
        """A new execution environment of ``function``: started cold on its first
        invocation, stopped with the stack."""
        if function not in FUNCTIONS:
            raise ValueError(f"no such function: {function!r}")
        options = self._options
        environment = ExecutionEnvironment(
            self.specs[function],
            environ={
                **os.environ,
                # Lambda publishes a function's metrics from its logs; the stack's terminal
                # (and the bench's table) would drown in them: off unless asked for.
                "POWERTOOLS_METRICS_DISABLED": os.environ.get(
                    "POWERTOOLS_METRICS_DISABLED", "true"
                ),
                **self._env,
                LOG_FORMAT_VARIABLE: options.log_format,
                LOG_COLOUR_VARIABLE: "1" if options.log_colour else "0",
                **({"POWERTOOLS_LOG_LEVEL": options.log_level} if options.log_level else {}),
            },
            **chaos,
        )
        with self._lock:
            self.environments.append(environment)
        return environment

    def pool(self, function: str) -> EnvironmentPool:
        """Environments of ``function`` as concurrent invocations need them."""
        return EnvironmentPool(lambda: self.environment(function).invoke)

    def dispatch_invoker(self) -> Invoke:
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
            return self.environment(
                "DispatcherFunction",
                kill_rate=options.kill_rate,
                seed=seed,
                dynamodb_fault_rate=options.dynamodb_fault_rate,
            ).invoke

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
        with self._lock:
            environments, self.environments = self.environments, []
        for environment in environments:
            environment.stop()
