"""A DynamoDB endpoint with streams on loopback: moto's server, one request at a time.

The local stack runs it as a process of its own (``python -m dispatcher.local.dynamodb.server``,
:mod:`.dynamodb_process`), as DynamoDB is a service apart from the function that calls it.

moto's backends are not thread-safe (a ``TransactWriteItems`` deep-copies tables that other
requests may be writing), while DynamoDB applies each request atomically. Serialising the
requests gives the local endpoint DynamoDB's per-request atomicity, and lets
:mod:`.moto_transactions` save only the items a transaction touches. What DynamoDB refuses
and moto would store is refused first (:mod:`.dynamodb_rules`).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from dispatcher.local.dynamodb import moto_expressions, moto_retention, moto_transactions
from dispatcher.local.dynamodb.rules import DynamoDBRules

__all__ = ["WRITES_PATH", "DynamoDBServer"]


#: Where the stack asks how many writes the endpoint has applied (no AWS API has this path).
WRITES_PATH = "/_local/writes"
_WRITES = (".PutItem", ".UpdateItem", ".DeleteItem", ".TransactWriteItems", ".BatchWriteItem")


class _OneAtATime:
    """Serves one request at a time, after refusing what DynamoDB would refuse."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._rules = DynamoDBRules()
        #: Write requests passed to moto so far: what tells the stack a save is due.
        self.writes = 0
        #: Every request served (the bench's measure of what a mail costs the endpoint).
        self.requests = 0
        #: Requests and CPU seconds by operation (``DynamoDB_20120810.PutItem``, ...): where a
        #: mail's cost to the endpoint goes.
        self.by_operation: Counter[str] = Counter()
        self.cpu_by_operation: defaultdict[str, float] = defaultdict(float)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") == WRITES_PATH:  # the stack's own question, not AWS's
            body = json.dumps(
                {
                    "writes": self.writes,
                    "requests": self.requests,
                    "by_operation": {
                        name: {"requests": count, "cpu_s": round(self.cpu_by_operation[name], 4)}
                        for name, count in self.by_operation.most_common()
                    },
                }
            ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
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
        operation = environ.get("HTTP_X_AMZ_TARGET") or _s3_operation(environ)
        with self._lock:
            self.requests += 1
            if operation.endswith(_WRITES):
                self.writes += 1
            started = time.thread_time()
            answer = list(self._app(environ, start_response))
            self.by_operation[operation] += 1
            self.cpu_by_operation[operation] += time.thread_time() - started
            return answer

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


def _s3_operation(environ: dict[str, Any]) -> str:
    """S3's requests carry no target header (DynamoDB's, Streams' and EventBridge's do)."""
    return f"S3.{environ.get('REQUEST_METHOD', '?')}"


class DynamoDBServer:
    """moto's DynamoDB, DynamoDB Streams and S3 on ``http://127.0.0.1:PORT``, served by
    waitress: werkzeug's development server (moto's own) closes every connection after one
    answer, so each request would cost a new connection and a new thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from waitress.server import BaseWSGIServer, create_server

        class RemembersBackends(DomainDispatcherApplication):
            """Finds each host's backend once: moto's own lookup lists its package's
            directory on every request, a fifth of the endpoint's time under load."""

            def __init__(self, create_app: Any) -> None:
                super().__init__(create_app)
                self.backends: dict[str | None, Any] = {}

            def get_backend_for_host(self, host: str | None) -> Any:
                if host not in self.backends:
                    self.backends[host] = super().get_backend_for_host(host)
                return self.backends[host]

        # "Task queue depth" warnings say requests wait: they do, one at a time, on purpose.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        moto_transactions.install()
        moto_expressions.install()
        moto_retention.install()
        _compile_event_paths_once()
        self._app = app = _OneAtATime(RemembersBackends(create_backend_app))
        #: Every socket the server polls (waitress's "map"): ours, so that stop() can close them.
        self._sockets: dict[int, Any] = {}
        server = create_server(
            app,
            map=self._sockets,
            host=host,
            port=port,
            threads=8,
            connection_limit=2000,  # every environment's pool of keep-alive connections
            asyncore_use_poll=True,  # no select() limit of 1024 descriptors
            channel_timeout=300,
            ident="dispatcher-local",
        )
        assert isinstance(server, BaseWSGIServer)  # one host and port: one socket
        self._server = server
        self._serving = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DynamoDBServer:
        self._serving.set()
        self._thread = threading.Thread(target=self._serve, name="dynamodb", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        # waitress's own run() loops for as long as any connection is open, and boto3 keeps
        # its connections alive: closing the listening socket alone left the thread serving
        # them for the 5 s of the join below at every stop. This is the same loop, one poll
        # at a time, with a way out.
        server = self._server
        while self._serving.is_set():
            server.asyncore.loop(
                timeout=0.2, map=self._sockets, use_poll=server.adj.asyncore_use_poll, count=1
            )

    def stop(self) -> None:
        """Stop serving, close every connection and release the port."""
        self._serving.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for channel in list(self._sockets.values()):  # the listening socket among them
            channel.close()
        self._server.task_dispatcher.shutdown()

    def __enter__(self) -> DynamoDBServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def writes(self) -> int:
        """How many write requests the endpoint has applied (or refused by condition)."""
        return self._app.writes

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.getsockname()
        return f"http://{host}:{port}"


def _main(argv: list[str]) -> int:
    """``python -m dispatcher.local.dynamodb.server [--host H] [--port P]``: serve until stdin
    closes (:func:`~dispatcher.local.child.serve_until_stdin_closes`)."""
    import argparse

    from dispatcher.local.child import serve_until_stdin_closes

    parser = argparse.ArgumentParser(prog="python -m dispatcher.local.dynamodb.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = DynamoDBServer(host=args.host, port=args.port).start()
    serve_until_stdin_closes({"endpoint_url": server.endpoint_url}, server.stop)
    return 0


def _compile_event_paths_once() -> None:
    """moto's EventBridge compiles a target's input paths (eight JSONPath expressions, each
    building a yacc parser) for every event it delivers: three quarters of a ``PutEvents``,
    the endpoint's costliest request per mail. The expressions are the same every time, so
    each is compiled once (``jsonpath_ng``'s parse, which moto imports when it delivers)."""
    import jsonpath_ng.ext

    parse = getattr(jsonpath_ng.ext, "parse")  # noqa: B009  (not in the module's __all__)
    if not hasattr(parse, "cache_info"):
        setattr(jsonpath_ng.ext, "parse", functools.lru_cache(maxsize=256)(parse))  # noqa: B010


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
