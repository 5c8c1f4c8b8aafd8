"""A socket server run on a daemon thread, started and stopped as one thing."""

from __future__ import annotations

import socketserver
import threading
from typing import Self

__all__ = ["BackgroundServer"]


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
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        thread = getattr(self, "_thread", None)
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
