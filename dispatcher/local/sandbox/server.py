"""A blastengine-compatible mail sandbox: a mail catcher that speaks the provider's wire format.

Same path, bearer token, request and response bodies as blastengine's transaction API; it
keeps every accepted mail and lists them (``GET /sandbox/mails`` as JSON, ``GET /`` as a plain
page) and counts requests, and those refused over its rate limit (``GET /sandbox/stats``). It
can be told to misbehave for a share of requests (429 with ``Retry-After``, 500, a slow
answer, a hang past the client's timeout with or without taking the mail), at start-up or at
run time with ``POST /sandbox/faults``, so retries and failed rows can be watched happening.
Its per-recipient results (``GET /logs/mails/results``) show an accepted mail only
``lookup_lag`` seconds after it was taken, as a real mail log lags; ``GET /deliveries/{id}``
knows it at once (its id was in the answer).

It binds loopback only, runs in a daemon thread and stops with :meth:`Sandbox.stop`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dispatcher.local._server import (
    BackgroundServer,
    KeepAliveHandler,
    QuietHTTPServer,
    send_answer,
)
from dispatcher.local.sandbox.lookups import bounce_events, delivery_detail, mail_results
from dispatcher.local.sandbox.model import (
    API_KEY_VARIABLE,
    Faults,
    SentMail,
    bounces_of,
)
from dispatcher.local.sandbox.rules import Multipart, validate_transaction
from dispatcher.local.sandbox.window import RateWindow, rate_window
from dispatcher.providers.blastengine.client import TRANSACTION_PATH, bearer_token

__all__ = ["Sandbox"]


API_PREFIX = "/api/v1"
#: blastengine's rate-limit headers, on every answer.
RATE_REMAINING = "X-RateLimit-Remaining"
RATE_RESETS_IN = "X-Rate-Limit-Retry-After-Seconds"
#: X-RateLimit-Remaining when no rate limit is set: plenty, as on an idle account.
UNLIMITED_REMAINING = 500


@dataclass
class _State:
    faults: Faults
    mails: list[SentMail] = field(default_factory=list)
    requests: int = 0
    refused: int = 0
    next_id: int = 1
    hung: set[Any] = field(default_factory=set)  # recipients already answered late once
    window: RateWindow | None = None  # the rate limit, built for (shape, limit) below
    window_for: tuple[str, float] | None = None
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sandbox(BackgroundServer):
    """The sandbox server.

    Example
    -------
    >>> with Sandbox(login_id="demo", api_key="demo-key") as sandbox:
    ...     sandbox.base_url  # doctest: +ELLIPSIS
    'http://127.0.0.1:.../api/v1'
    """

    name = "sandbox"

    def __init__(
        self,
        *,
        login_id: str,
        api_key: str,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._token = bearer_token(login_id, api_key)
        initial = faults or Faults()
        self._state = _State(faults=initial, rng=random.Random(initial.seed))  # noqa: S311
        self._server = QuietHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        #: Where bounces are reported, as blastengine's console would be set to (the stack's
        #: webhook URL); None reports none.
        self.webhook_url: str | None = None

    @property
    def base_url(self) -> str:
        host, port = self._host_port
        return f"http://{host}:{port}{API_PREFIX}"

    @property
    def mails(self) -> list[SentMail]:
        with self._state.lock:
            return list(self._state.mails)

    @property
    def requests(self) -> int:
        with self._state.lock:
            return self._state.requests

    def set_faults(self, faults: Faults) -> None:
        with self._state.lock:
            self._state.faults = faults
            if faults.seed is not None:
                self._state.rng.seed(faults.seed)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"sandbox": self})

    def _transaction(
        self, authorization: str, body: Any, files: list[dict[str, Any]] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request to the transaction API; every answer carries the rate-limit headers,
        as blastengine's do."""
        state = self._state
        with state.lock:
            state.requests += 1
            faults = state.faults
            roll = state.rng.random()
            over_limit = self._take_rate_slot(faults)
            # The window as this request left it, counted where a gateway counts it.
            window = self._window(faults)
        status, payload = self._answer(authorization, body, files or [], faults, roll, over_limit)
        if status == 429 and not over_limit:
            # An injected 429 (a proxy's, or a limit the window does not show) says when to
            # come back in Retry-After and in blastengine's header alike.
            window = {
                RATE_REMAINING: "0",
                RATE_RESETS_IN: f"{faults.retry_after:g}",
                "Retry-After": f"{faults.retry_after:g}",
            }
        return status, payload, window

    def _answer(
        self,
        authorization: str,
        body: Any,
        files: list[dict[str, Any]],
        faults: Faults,
        roll: float,
        over_limit: bool,
    ) -> tuple[int, dict[str, Any]]:
        state = self._state
        if faults.latency:
            time.sleep(faults.latency)
        if authorization != f"Bearer {self._token}":
            return 401, {"error_messages": {"Authorization": ["invalid bearer token"]}}
        if over_limit or roll < faults.rate_limited:
            return 429, {"error_messages": {"rate": ["too many requests"]}}
        failing = faults.rate_limited + faults.server_error
        if roll < failing or (isinstance(body, dict) and body.get("to") in faults.fail_to):
            return 500, {"error_messages": {"server": ["internal error (injected)"]}}
        if roll < failing + faults.timeout:
            time.sleep(faults.hang_seconds)  # the client has given up by now
            return 504, {"error_messages": {"gateway": ["timed out (injected)"]}}
        problems = validate_transaction(body, files, attachment_limit=faults.attachment_limit)
        if problems:
            return 400, {"error_messages": problems}
        bounces = bounces_of(body, faults.bounce)
        if faults.bounce_share and isinstance(body, dict) and isinstance(body.get("to"), str):
            with state.lock:
                if state.rng.random() < faults.bounce_share:
                    bounces.setdefault(body["to"], "HARDERROR")
        with state.lock:
            delivery_id = state.next_id
            state.next_id += 1
            received = datetime.now(UTC).isoformat()
            mail = SentMail(delivery_id, received, body, tuple(files), bounces)
            state.mails.append(mail)
            to = body.get("to")
            hang_once = to in faults.hang_once_to and to not in state.hung
            if hang_once:
                state.hung.add(to)
        if bounces and faults.webhook and self.webhook_url:
            timer = threading.Timer(faults.bounce_delay, self._report, args=(mail,))
            timer.daemon = True
            timer.start()
        if hang_once or roll < failing + faults.timeout + faults.accepted_timeout:
            time.sleep(faults.hang_seconds)  # accepted, but the answer comes too late
        return 201, {"delivery_id": delivery_id}

    def _report(self, mail: SentMail) -> None:
        """POST the mail's bounces to the webhook, in blastengine's shape; retried a few
        times as blastengine retries a webhook that failed."""
        import httpx

        body = {"events": bounce_events(mail)}
        for attempt in range(5):
            try:
                answer = httpx.post(str(self.webhook_url), json=body, timeout=10)
                if answer.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2 * 2**attempt)

    def _lookup(
        self, authorization: str, path: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any]]:
        """``GET /deliveries/{id}`` and ``GET /logs/mails/results``, from the mail kept."""
        if authorization != f"Bearer {self._token}":
            return 401, {"error_messages": {"Authorization": ["invalid bearer token"]}}
        with self._state.lock:
            faults = self._state.faults
        if faults.lookups_down:
            return 503, {"error_messages": {"server": ["look-ups unavailable (injected)"]}}
        if path.startswith("/deliveries/"):
            wanted = path.removeprefix("/deliveries/")
            for mail in self.mails:
                if str(mail.delivery_id) == wanted:
                    return 200, delivery_detail(mail)
            return 404, {"error_messages": {"delivery_id": ["not found"]}}
        if path == "/logs/mails/results":
            # The per-recipient log lags what was taken (written as the mail is processed);
            # a delivery, whose id the answer carried, is there at once.
            visible_until = datetime.now(UTC) - timedelta(seconds=faults.lookup_lag)
            return mail_results(
                [m for m in self.mails if datetime.fromisoformat(m.received_at) <= visible_until],
                query,
                soft_retry=faults.soft_retry,
            )
        return 404, {"error_messages": {"path": ["not found"]}}

    def _take_rate_slot(self, faults: Faults) -> bool:
        """Count the request against the rate limit (:mod:`.window`, in the shape the faults
        name); True if it is over the limit."""
        window = self._rate_window(faults)
        if window is None or window.take(time.monotonic()):
            return False
        self._state.refused += 1
        return True

    def _window(self, faults: Faults) -> dict[str, str]:
        """The rate-limit headers: the requests left in the window, and the seconds until it
        resets (a bucket: until its next token)."""
        window = self._rate_window(faults)
        if window is None:
            return {RATE_REMAINING: str(UNLIMITED_REMAINING), RATE_RESETS_IN: "60"}
        remaining, resets_in = window.state(time.monotonic())
        return {RATE_REMAINING: str(remaining), RATE_RESETS_IN: f"{resets_in:.3f}"}

    def _rate_window(self, faults: Faults) -> RateWindow | None:
        """The current window, new when the faults changed its shape or limit."""
        state = self._state
        if faults.rate_limit <= 0:
            return None
        wanted = (faults.window, faults.rate_limit)
        if state.window is None or state.window_for != wanted:
            state.window, state.window_for = rate_window(*wanted), wanted
        return state.window

    @property
    def refused(self) -> int:
        with self._state.lock:
            return self._state.refused

    def _page(self) -> str:
        lines = [f"blastengine sandbox: {len(self.mails)} mail(s) received", ""]
        for mail in self.mails:
            p = mail.payload
            lines.append(
                f"#{mail.delivery_id}  {mail.received_at}  to={p.get('to')}  "
                f"subject={p.get('subject')!r}"
            )
        return "\n".join(lines) + "\n"


def _main(argv: list[str]) -> int:
    """``python -m dispatcher.local.sandbox.server --login-id ID [--faults JSON]``, the API key in
    :data:`API_KEY_VARIABLE` (never on a command line, where any user's ``ps`` sees it): the
    sandbox in a process of its own, as the service it stands for is (issue 21); serves until
    stdin closes (:func:`~dispatcher.local.child.serve_until_stdin_closes`)."""
    import argparse

    from dispatcher.local.child import serve_until_stdin_closes

    parser = argparse.ArgumentParser(prog="python -m dispatcher.local.sandbox.server")
    parser.add_argument("--login-id", required=True)
    parser.add_argument("--faults", default="{}", help="Faults as JSON")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    faults = Faults.from_json(json.loads(args.faults))
    api_key = os.environ.get(API_KEY_VARIABLE, "")
    sandbox = Sandbox(login_id=args.login_id, api_key=api_key, faults=faults, port=args.port)
    sandbox.start()
    serve_until_stdin_closes({"base_url": sandbox.base_url}, sandbox.stop)
    return 0


class _Handler(KeepAliveHandler):
    """The sandbox's HTTP face: its own pages and controls under ``/sandbox``, blastengine's
    API under ``/api/v1``, its connections kept as the real API's are. A subclass per
    sandbox names it (:meth:`Sandbox._handler_class`)."""

    sandbox: Sandbox
    server_version = "blastengine-sandbox/1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/sandbox/mails":
            self._json(HTTPStatus.OK, {"mails": [asdict(m) for m in self.sandbox.mails]})
        elif url.path.rstrip("/") == "/sandbox/stats":
            self._json(
                HTTPStatus.OK,
                {"requests": self.sandbox.requests, "over_limit": self.sandbox.refused},
            )
        elif url.path in ("/", "/sandbox"):
            self._text(HTTPStatus.OK, self.sandbox._page())
        elif url.path.startswith(API_PREFIX + "/"):
            authorization = self.headers.get("Authorization", "")
            status, payload = self.sandbox._lookup(
                authorization, url.path.removeprefix(API_PREFIX), parse_qs(url.query)
            )
            self._json(status, payload)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error_messages": {"path": ["not found"]}})

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/sandbox/webhook":
            url = body.get("url") if isinstance(body, dict) else None
            self.sandbox.webhook_url = url if isinstance(url, str) and url else None
            self._json(HTTPStatus.OK, {"url": self.sandbox.webhook_url})
        elif self.path == "/sandbox/faults":
            self._set_faults(body)
        elif self.path == API_PREFIX + TRANSACTION_PATH:
            files: list[dict[str, Any]] = []
            if isinstance(body, Multipart):
                body, files = body.data, body.files
            status, payload, headers = self.sandbox._transaction(
                self.headers.get("Authorization", ""), body, files
            )
            self._json(status, payload, headers)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error_messages": {"path": ["not found"]}})

    def _set_faults(self, body: Any) -> None:
        if not isinstance(body, dict):
            problem = {"error_messages": {"body": ["must be a JSON object"]}}
            self._json(HTTPStatus.BAD_REQUEST, problem)
            return
        state = self.sandbox._state
        try:
            faults = Faults.from_json(body, state.faults)
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error_messages": {"faults": [str(exc)]}})
            return
        self.sandbox.set_faults(faults)
        self._json(HTTPStatus.OK, asdict(state.faults))

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            return Multipart.parse(content_type, raw)
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        kind = {"Content-Type": "application/json; charset=utf-8"}
        send_answer(self, status, data, {**kind, **(headers or {})})

    def _text(self, status: int, text: str) -> None:
        kind = {"Content-Type": "text/plain; charset=utf-8"}
        send_answer(self, status, text.encode("utf-8"), kind)


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
