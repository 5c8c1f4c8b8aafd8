"""The local stack's HTTP servers: run on a daemon thread, started and stopped as one thing."""

from __future__ import annotations

import socketserver
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Self

__all__ = ["BackgroundServer", "QuietHTTPServer"]


class BackgroundServer:
    """Serves ``self._server`` on a thread named ``name`` until :meth:`stop`."""

    _server: socketserver.BaseServer
    name = "server"

    def start(self) -> Self:
        # A tenth of a second between checks for shutdown (socketserver's default is half):
        # every stop of the stack waits for it, and the suite stops dozens.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=self.name,
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (a server bound but never started: the port)."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self._server.shutdown()  # waits for serve_forever: only once it was started
        self._server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def _host_port(self) -> tuple[str, int]:
        address = self._server.server_address
        assert isinstance(address, tuple)  # an IP socket: (host, port, ...)
        return str(address[0]), int(address[1])


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that gave up (a timeout the sandbox was told to cause) is not an error."""

    # Every execution environment opens a pool of connections at once; socketserver's
    # backlog of 5 would leave the rest waiting a second for their SYN to be retried.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
