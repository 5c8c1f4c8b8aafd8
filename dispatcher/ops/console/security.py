"""Who may drive the console, and what its pages may do in a browser.

The console listens on loopback, where every local user and every web page open in the
operator's browser can reach it, so it asks for the random token it printed at start: in the
URL once (then a cookie, and the URL is cleaned of it), or as ``Authorization: Bearer`` for
scripts. Forms carry a CSRF token derived from it; the cookie is ``SameSite=Strict`` besides.
Every answer forbids scripts, remote loads and framing (Content-Security-Policy), and the
``Host`` header is checked against the console's own address (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.datastructures import URL, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PAGE_POLICY", "PREVIEW_POLICY", "Guard", "TokenMiddleware"]

#: The console's own pages: its stylesheet and nothing else; no script anywhere.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: A mail's HTML shown as a preview: inline styles and inline images only, in a sandbox with
#: an origin of its own (no cookies, no script, no forms, nothing remote).
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)


@dataclass(frozen=True)
class Guard:
    """The console's secret and what is derived from it."""

    token: str
    cookie_name: str

    @property
    def csrf_token(self) -> str:
        return hmac.new(self.token.encode(), b"csrf", hashlib.sha256).hexdigest()

    @property
    def cookie_value(self) -> str:
        """What the cookie holds: derived from the token, not the token. Cookies ignore
        ports, so a web server on another port of this host is sent it by the browser: with
        it, that server could read pages while the console runs, but neither learn the token
        nor write (a write needs the CSRF token, derived from the token too)."""
        return hmac.new(self.token.encode(), b"cookie", hashlib.sha256).hexdigest()

    def is_cookie(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.cookie_value.encode())

    def is_token(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    def csrf_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf_token.encode())


class TokenMiddleware:
    """Lets a request through if it carries the token (cookie or bearer), swaps a token in
    the query string for the cookie, checks ``Host`` and sets the security headers."""

    def __init__(self, app: ASGIApp, *, guard: Guard, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.guard = guard
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._refusal(request)
        if response is not None:
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if host not in self.allowed_hosts:
            return PlainTextResponse(f"this console does not answer for host {host!r}", 421)
        guard = self.guard
        offered = request.query_params.get("token")
        if offered is not None:
            if not guard.is_token(offered):
                return _refused("the token in this URL is not this console's")
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            # A path of the console's only: "//evil.example/x" (or "/\\evil...") would make
            # the redirect leave for another site.
            path = "/" + request.url.path.lstrip("/\\")
            clean = URL(path=path, query=urlencode(rest))
            response = RedirectResponse(str(clean), status_code=303)
            response.set_cookie(
                guard.cookie_name, guard.cookie_value, httponly=True, samesite="strict", path="/"
            )
            return response
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer ") and guard.is_token(bearer[7:]):
            request.scope["console.auth"] = "bearer"
            return None
        if guard.is_cookie(request.cookies.get(guard.cookie_name)):
            request.scope["console.auth"] = "cookie"
            return None
        return _refused("this console needs the token it printed when it started")


def _refused(why: str) -> Response:
    return PlainTextResponse(
        f"{why}: open the URL that `dispatcher console` (or `dispatcher dev`) printed, or "
        "send the token as `Authorization: Bearer TOKEN`.",
        status_code=401,
    )


_HEADERS = [
    ("content-security-policy", PAGE_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
]
