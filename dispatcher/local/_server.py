"""The local stack's HTTP servers: run on a daemon thread, started and stopped as one thing."""

from __future__ import annotations

import socketserver
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["BackgroundServer", "KeepAliveHandler", "QuietHTTPServer", "send_answer"]


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


class KeepAliveHandler(BaseHTTPRequestHandler):
    """A handler that keeps its client's connection, as the APIs the stack stands for do
    (HTTP/1.0 would cost a new connection, and a server thread, per request); quiet."""

    protocol_version = "HTTP/1.1"
    # An answer's headers and body leave in two writes: with Nagle's algorithm on, the body
    # waits for the client's delayed ACK, 40 ms an answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the functions' and the stack's own logs tell the story."""


def send_answer(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: Mapping[str, str]
) -> None:
    """One whole answer: ``headers`` and the body's ``Content-Length`` (counted here, so every
    answer has one, as a kept connection needs), then the body."""
    handler.send_response(status)
    for name, value in headers.items():
        if name.lower() != "content-length":
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
