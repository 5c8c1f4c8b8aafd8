"""A function URL on loopback: HTTP requests in, the webhook function's answers out.

Lambda turns each request to a function URL into a payload-2.0 event and the function's
``{statusCode, headers, body}`` back into the HTTP answer; this does the same for the local
stack's webhook function, so blastengine's sandbox (or curl) posts to it as it would to AWS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from dispatcher.local._server import BackgroundServer, QuietHTTPServer, send_answer

__all__ = ["FunctionUrlServer"]

#: Lambda refuses a function URL request body over 6 MB before the function sees it.
MAX_REQUEST_BYTES = 6 * 1024 * 1024


class FunctionUrlServer(BackgroundServer):
    """Serves one function at ``http://127.0.0.1:PORT/``: each request an event handed to
    ``invoke`` (the function's execution environments), its answer the response."""

    name = "function-url"

    def __init__(
        self,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._invoke = invoke
        self._server = QuietHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._host_port
        return f"http://{host}:{port}/"

    def invoke(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        url = urlsplit(target)
        event = {
            "version": "2.0",
            "rawPath": url.path,
            "rawQueryString": url.query,
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {
                "http": {"method": method, "path": url.path, "sourceIp": "127.0.0.1"},
                "stage": "$default",
            },
            "body": body.decode("utf-8", errors="replace"),
            "isBase64Encoded": False,
        }
        return self._invoke(event)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # the path holds the secret: never log it

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_REQUEST_BYTES:
                    self._send(413, {"message": "Request Entity Too Large"})
                    return
                body = self.rfile.read(length) if length else b""
                try:
                    answer = server.invoke(self.command, self.path, dict(self.headers), body)
                except Exception:
                    # Lambda answers a function error with a 502 and no detail.
                    self._send(502, {"message": "Internal Server Error"})
                    return
                self._send(
                    int(answer.get("statusCode", 200)),
                    answer.get("body", ""),
                    answer.get("headers") or {},
                )

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                send_answer(self, status, data, headers or {"Content-Type": "application/json"})

        return Handler
