"""A DynamoDB endpoint with streams on loopback: moto's server, one request at a time.

moto's backends are not thread-safe (a ``TransactWriteItems`` deep-copies tables that other
requests may be writing), while DynamoDB applies each request atomically. Serialising the
requests gives the local endpoint DynamoDB's per-request atomicity, and lets
:mod:`.moto_transactions` save only the items a transaction touches. What DynamoDB refuses
and moto would store is refused first (:mod:`.dynamodb_rules`).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from dispatcher.local import moto_transactions
from dispatcher.local._server import BackgroundServer
from dispatcher.local.dynamodb_rules import DynamoDBRules

__all__ = ["DynamoDBServer"]


_WRITES = (".PutItem", ".UpdateItem", ".DeleteItem", ".TransactWriteItems", ".BatchWriteItem")


class _OneAtATime:
    """Serves one request at a time, after refusing what DynamoDB would refuse."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._rules = DynamoDBRules()
        #: Write requests passed to moto so far: what tells the stack a save is due.
        self.writes = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        refusal = self._refusal(environ)
        if refusal is not None:
            body = json.dumps(
                {"__type": "com.amazon.coral.validate#ValidationException", "message": refusal}
            ).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        with self._lock:
            if environ.get("HTTP_X_AMZ_TARGET", "").endswith(_WRITES):
                self.writes += 1
            return list(self._app(environ, start_response))

    def _refusal(self, environ: dict[str, Any]) -> str | None:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return None
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)  # moto reads it again
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            return None  # moto answers a body it cannot read as DynamoDB would
        if not isinstance(request, dict):
            return None
        return self._rules.check(target.rsplit(".", 1)[-1], request)


class DynamoDBServer(BackgroundServer):
    """moto's DynamoDB and DynamoDB Streams on ``http://127.0.0.1:PORT``."""

    name = "dynamodb"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one line per DynamoDB call drowns the dispatcher's own logs

        moto_transactions.install()
        self._app = app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietHandler
        )

    @property
    def writes(self) -> int:
        """How many write requests the endpoint has applied (or refused by condition)."""
        return self._app.writes

    @property
    def endpoint_url(self) -> str:
        host, port = self._host_port
        return f"http://{host}:{port}"
