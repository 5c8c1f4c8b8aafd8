"""The console served by uvicorn on a thread, started and stopped as one thing."""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn

from dispatcher.ops.admin import Admin
from dispatcher.ops.console.app import create_app

__all__ = ["ConsoleServer"]


class ConsoleServer:
    """Serves the console for ``admin`` on ``host:port`` (0: a free port) until :meth:`stop`.

    The socket is bound here, before the thread starts, so the URL (with its token) is known
    as soon as :meth:`start` returns.
    """

    def __init__(
        self,
        admin: Admin,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_from_email: str = "noreply@example.com",
        target: str = "local stack",
        staging: str = "",
    ) -> None:
        self._socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        hosts = {f"{shown}:{self.port}"}
        if host in ("127.0.0.1", "::1", "localhost"):
            hosts |= {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}
        self.app = create_app(
            admin,
            default_from_email=default_from_email,
            target=target,
            staging=staging,
            allowed_hosts=frozenset(hosts),
            cookie_name=f"dispatcher_console_{self.port}",  # cookies ignore ports
        )
        self.base_url = f"http://{shown}:{self.port}/"
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return str(self.app.state.guard.token)

    @property
    def url(self) -> str:
        """The URL to open: it carries the token once, which the console swaps for a cookie."""
        return f"{self.base_url}?token={self.token}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="console",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise OSError("the console did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
