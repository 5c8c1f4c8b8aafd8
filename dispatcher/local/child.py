"""A part of the local stack in a process of its own, as the service it stands for is on AWS.

DynamoDB is a service, and the sandbox stands for one: run in the stack's own process they
shared one interpreter lock with the function they serve, and every figure the stack gave
measured that lock (issue 21). Each now runs as ``python -m MODULE``, which prints one JSON
line on stdout once it serves (its address), then serves until its stdin closes. The stack
holds the other end of that pipe, so however the stack ends, ``kill -9`` included, the child
sees the end of its input and stops: nothing is left running.

The child gets a session of its own, so a Ctrl-C at the terminal reaches the stack alone,
which stops the parts in order (DynamoDB last); its stderr is the stack's, one log stream.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Self

import httpx

__all__ = [
    "ChildProcess",
    "ServiceProcess",
    "end_by_closing_stdin",
    "exit_description",
    "serve_until_stdin_closes",
]

#: Seconds a child may take to print its ready line (imports, binding its socket).
START_TIMEOUT_SECONDS = 60.0
#: Seconds a child may take to stop after its stdin closed, before it is killed.
STOP_TIMEOUT_SECONDS = 10.0


def end_by_closing_stdin(
    process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS
) -> None:
    """Close a child's stdin (its read loop ends on EOF and it stops by itself), then kill it
    if it outstays ``timeout``: how the stack ends each of its processes."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):  # already gone
            process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def exit_description(code: int) -> str:
    """A process's return code as people read it: ``signal 9``, ``exit status 1``."""
    return f"signal {-code}" if code < 0 else f"exit status {code}"


class ChildProcess:
    """Starts ``python -m module *args`` and waits for its ready line.

    Example
    -------
    >>> child = ChildProcess("dynamodb", "dispatcher.local.dynamodb.server", [])
    >>> child.start()["endpoint_url"]  # doctest: +SKIP
    'http://127.0.0.1:40123'
    """

    def __init__(
        self, name: str, module: str, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self._argv = [sys.executable, "-m", module, *args]
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        """Start the child; returns its ready line. Raises OSError if it does not come up."""
        process = self._process = subprocess.Popen(  # noqa: S603  (our own module)
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._env,
            start_new_session=True,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_SECONDS)
        line = process.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise OSError(f"the {self.name} process did not start ({self.describe_exit()})")
        self.ready = json.loads(line)
        return self.ready

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def describe_exit(self) -> str:
        """How the child ended, for the stack's message: ``signal 9``, ``exit status 1``."""
        code = self._process.poll() if self._process is not None else None
        if code is None:
            return "still running" if self._process is not None else "never started"
        return exit_description(code)

    def stop(self) -> None:
        """Close its stdin (it stops by itself), then kill it if it outstays the timeout."""
        process, self._process = self._process, None
        if process is None:
            return
        end_by_closing_stdin(process)
        if process.stdout is not None:
            process.stdout.close()
        self._process = process  # kept for describe_exit()


class ServiceProcess:
    """A service of the stack in a child process, and an HTTP client of it: what the
    DynamoDB endpoint's and the sandbox's stack-side classes share.

    ``address_key`` names the ready line's address; ``root`` trims it to where the service's
    own control paths are (the sandbox's API lives under ``/api/v1``, its controls not).
    """

    address_key = "url"

    def __init__(self, child: ChildProcess) -> None:
        self._child = child
        self.address = ""
        self._http: httpx.Client | None = None

    def start(self) -> Self:
        self.address = str(self._child.start()[self.address_key])
        self._http = httpx.Client(base_url=self.root(self.address), timeout=10)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._child.stop()

    def root(self, address: str) -> str:
        return address

    def alive(self) -> bool:
        return self._child.alive()

    def describe_exit(self) -> str:
        return self._child.describe_exit()

    def http(self) -> httpx.Client:
        assert self._http is not None, f"the {self._child.name} is not started"
        return self._http

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_until_stdin_closes(ready: dict[str, Any], stop: Callable[[], None]) -> None:
    """The child's side: announce ``ready`` on stdout, then block until stdin closes (the
    stack stopped, or died) or SIGTERM comes, and call ``stop``."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack decides when its parts stop

    def read_until_eof() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        done.set()

    threading.Thread(target=read_until_eof, name="stdin", daemon=True).start()
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    while not done.wait(0.5):
        pass
    stop()
