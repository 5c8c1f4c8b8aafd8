"""Lambda's Runtime API for one execution environment, as the runtime interface client meets it.

The documented endpoints (AWS Lambda Developer Guide, "Using the Lambda runtime API for custom
runtimes"), under ``/2018-06-01``: ``GET /runtime/invocation/next`` hands over the next event
(a long poll) with the ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``,
``Lambda-Runtime-Invoked-Function-Arn`` and ``Lambda-Runtime-Trace-Id`` headers;
``POST /runtime/invocation/{id}/response`` and ``.../error`` take its outcome (the error with
``Lambda-Runtime-Function-Error-Type``); ``POST /runtime/init/error`` reports a function that
could not start. Each answers ``202 Accepted``; an unknown request id is ``400``. One more
path is the stack's own, not Lambda's: the current invocation's kill plan, for ``--kill-rate``
(:mod:`.bootstrap`).

One server per environment, because the client finds the API through its environment
(``AWS_LAMBDA_RUNTIME_API``) and asks for one invocation at a time, as on Lambda.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from dispatcher.local._server import (
    BackgroundServer,
    KeepAliveHandler,
    QuietHTTPServer,
    send_answer,
)
from dispatcher.local.lambda_service.bootstrap import KILL_PLAN_PATH

__all__ = ["Invocation", "Outcome", "RuntimeApi"]

PREFIX = "/2018-06-01/runtime"


@dataclass(frozen=True)
class Outcome:
    """What the runtime said of an invocation (or of its init): ``kind`` is ``response``,
    ``error`` (the function raised) or ``init-error``; ``body`` as it was posted."""

    kind: str
    body: bytes
    error_type: str | None = None

    def error(self) -> dict[str, Any]:
        """The posted error, in Lambda's shape (``errorMessage``, ``errorType``, ...)."""
        try:
            shaped = json.loads(self.body or b"{}")
        except ValueError:
            shaped = {"errorMessage": self.body.decode(errors="replace")}
        if not isinstance(shaped, dict):
            shaped = {"errorMessage": str(shaped)}
        shaped.setdefault("errorType", self.error_type or "Runtime.Unknown")
        return shaped


@dataclass
class Invocation:
    """One event on its way through the API, and what came back."""

    event: bytes
    deadline_ms: int
    function_arn: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_id: str = field(
        default_factory=lambda: (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};"
            "Sampled=0"
        )
    )
    #: Where the stack's chaos means this invocation to die (``KillPlan.to_json``), if it does.
    kill_plan: dict[str, Any] | None = None
    outcome: Outcome | None = None
    done: threading.Event = field(default_factory=threading.Event)


class RuntimeApi(BackgroundServer):
    """The API one environment's runtime client polls; the stack queues invocations on it."""

    name = "runtime api"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._next: queue.Queue[Invocation] = queue.Queue()
        self._current: Invocation | None = None
        self._lock = threading.Lock()
        #: The runtime's init error, if it posted one (then it exits).
        self.init_error: Outcome | None = None
        self._closing = threading.Event()
        self._server = QuietHTTPServer((host, 0), type("Handler", (_Handler,), {"api": self}))
        self._server.daemon_threads = True

    @property
    def address(self) -> str:
        """``host:port``, as ``AWS_LAMBDA_RUNTIME_API`` gives it."""
        host, port = self._host_port
        return f"{host}:{port}"

    def submit(self, invocation: Invocation) -> Invocation:
        self._next.put(invocation)
        return invocation

    def stop(self) -> None:
        self._closing.set()
        super().stop()

    def _take_next(self) -> Invocation | None:
        """The next invocation, once there is one (None when the API closes)."""
        while not self._closing.is_set():
            try:
                invocation = self._next.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._current = invocation
            return invocation
        return None

    def _finish(self, request_id: str, outcome: Outcome) -> bool:
        with self._lock:
            invocation = self._current
            if invocation is None or invocation.request_id != request_id:
                return False
            self._current = None
        invocation.outcome = outcome
        invocation.done.set()
        return True


class _Handler(KeepAliveHandler):
    """The runtime client keeps its connection, as Lambda's API allows."""

    api: RuntimeApi

    def do_GET(self) -> None:
        if self.path == KILL_PLAN_PATH:  # the stack's chaos, asked by its bootstrap
            current = self.api._current
            self._answer(HTTPStatus.OK, current.kill_plan if current else None)
            return
        if self.path != f"{PREFIX}/invocation/next":
            self._answer(HTTPStatus.NOT_FOUND, {"errorMessage": "not found"})
            return
        invocation = self.api._take_next()
        if invocation is None:
            self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"errorMessage": "shutting down"})
            return
        self._answer(
            HTTPStatus.OK,
            invocation.event,
            {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
            },
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        if self.path == f"{PREFIX}/init/error":
            self.api.init_error = Outcome("init-error", body, error_type)
            self._answer(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        parts = self.path.removeprefix(f"{PREFIX}/invocation/").split("/")
        if len(parts) != 2 or parts[1] not in ("response", "error"):
            self._answer(HTTPStatus.NOT_FOUND, {"errorMessage": "not found"})
            return
        request_id, kind = parts
        if not self.api._finish(request_id, Outcome(kind, body, error_type)):
            self._answer(
                HTTPStatus.BAD_REQUEST,
                {
                    "errorMessage": f"no invocation {request_id} in progress",
                    "errorType": "InvalidRequestID",
                },
            )
            return
        self._answer(HTTPStatus.ACCEPTED, {"status": "OK"})

    def _answer(self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        send_answer(self, status, raw, {"Content-Type": "application/json", **(headers or {})})
