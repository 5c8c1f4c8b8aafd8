"""The console as an ASGI app: each page at its path and at its JSON twin under ``/api``.

Every page is a function of the request that builds one dict (:mod:`~dispatcher.ops.console.views`
reads, :mod:`~dispatcher.ops.console.actions` writes); here the dict is rendered into its
template for a browser, or returned as it is for scripts, so nothing is only in the HTML.
Errors become a page or a JSON ``{"error": ...}`` with their status.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dispatcher.ops.admin import LISTABLE_STATUSES, Admin, BadPageTokenError
from dispatcher.ops.console.actions import (
    bulk_refire,
    cancel,
    edit,
    refire,
    resend,
    resume_category,
)
from dispatcher.ops.console.chart import Timeline
from dispatcher.ops.console.context import (
    ERROR_KINDS,
    ConsoleError,
    Context,
    Form,
    SentCache,
    View,
    is_api,
)
from dispatcher.ops.console.security import Guard, TokenMiddleware
from dispatcher.ops.console.suppression_pages import suppression_remove, suppressions_page
from dispatcher.ops.console.template_pages import (
    template_editor,
    template_preview,
    template_test,
    templates_list,
)
from dispatcher.ops.console.views import (
    history,
    overview,
    preview,
    recipient,
    row_page,
    rows,
    sent_item,
    sent_preview,
)
from dispatcher.storage.dynamodb import StoreError
from dispatcher.support.clock import parse_iso

__all__ = ["create_app"]

HERE = Path(__file__).resolve().parent


#: Each page: its path, its view, its template, its methods; each has a JSON twin under /api.
_PAGES: tuple[tuple[str, View, str, list[str]], ...] = (
    ("/", overview, "overview", ["GET"]),
    ("/rows", rows, "rows", ["GET"]),
    # The id ends each path, whole (ids may hold "/"): the action comes first.
    ("/rows/{row_id:path}", row_page, "row", ["GET"]),
    ("/edit/{row_id:path}", edit, "edit", ["GET", "POST"]),
    ("/refire/{row_id:path}", refire, "confirm", ["GET", "POST"]),
    ("/cancel/{row_id:path}", cancel, "confirm", ["GET", "POST"]),
    ("/preview/{row_id:path}", preview, "", ["GET"]),
    ("/refire-failed", bulk_refire, "confirm", ["GET", "POST"]),
    ("/history", history, "history", ["GET"]),
    ("/recipients/{address:path}", recipient, "recipient", ["GET"]),
    ("/sent/{row_id:path}", sent_item, "sent", ["GET"]),
    ("/sent-preview/{row_id:path}", sent_preview, "", ["GET"]),
    ("/resend/{row_id:path}", resend, "resend", ["GET", "POST"]),
    ("/templates", templates_list, "templates", ["GET"]),
    ("/templates/{name}", template_editor, "template", ["GET", "POST"]),
    ("/template-preview/{name}", template_preview, "", ["GET"]),
    ("/template-test/{name}", template_test, "", ["POST"]),
    ("/suppressions", suppressions_page, "suppressions", ["GET", "POST"]),
    ("/suppression-remove", suppression_remove, "lift", ["GET", "POST"]),
    ("/resume", resume_category, "resume_category", ["GET", "POST"]),
)


def create_app(
    admin: Admin,
    *,
    token: str | None = None,
    default_from_email: str = "noreply@example.com",
    target: str = "local stack",
    staging: str = "",
    allowed_hosts: frozenset[str] = frozenset(),
    cookie_name: str = "dispatcher_console",
) -> Starlette:
    """The console as an ASGI app over ``admin``'s tables. ``token`` defaults to a new random
    one (``app.state.guard.token``); ``allowed_hosts`` are the ``Host`` values it answers."""
    guard = Guard(token or secrets.token_urlsafe(32), cookie_name)
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters["age"] = _age
    templates.globals["chart"] = _chart
    context = Context(admin, guard, default_from_email, target, templates, SentCache(admin))

    def page(view: View, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            api = is_api(request)
            try:
                form: Form = {}
                if request.method == "POST":
                    await _check_csrf(guard, request, api)
                    form = await _submitted(request)
                # boto3 blocks: the views run on Starlette's thread pool, not the event loop
                result = await run_in_threadpool(view, context, request, form)
            except ConsoleError as exc:
                return _error(context, request, exc.status, str(exc), api)
            except BadPageTokenError as exc:
                return _error(context, request, 400, str(exc), api)
            except StoreError as exc:
                return _error(context, request, 503, f"DynamoDB: {exc}", api)
            if isinstance(result, Response):
                return result
            if api:
                return JSONResponse(_jsonable(result), status_code=result.get("status_code", 200))
            html = templates.get_template(f"{name}.html").render(
                **result, request=request, csrf=guard.csrf_token, target=target, staging=staging,
                statuses=LISTABLE_STATUSES, kinds=ERROR_KINDS, query=_query,
                flash=flash(request.query_params.get("done")),
            )  # fmt: skip
            return HTMLResponse(html, status_code=result.get("status_code", 200))

        return endpoint

    routes: list[Route | Mount] = []
    for path, view, name, methods in _PAGES:
        endpoint = page(view, name)
        routes.append(Route(path, endpoint, methods=methods))
        api_path = "/api/overview" if path == "/" else f"/api{path}"
        routes.append(Route(api_path, endpoint, methods=methods))
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=routes)
    app.add_middleware(TokenMiddleware, guard=guard, allowed_hosts=allowed_hosts)
    app.state.guard = guard
    return app


def _chart(flow: dict[str, Any], title: str) -> Markup:
    """The SVG of one of :func:`_flow`'s timelines (a template global)."""
    end = datetime.fromisoformat(flow["end"])
    timeline = Timeline(end, timedelta(seconds=flow["step_seconds"]), flow["counts"])
    return Markup(timeline.svg(title))  # noqa: S704  (built from numbers; the title is escaped)


async def _submitted(request: Request) -> Form:
    if is_api(request) and request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        if not isinstance(body, dict):
            raise ConsoleError(400, "the body must be a JSON object of form fields")
        return {str(k): "" if v is None else str(v) for k, v in body.items()}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _check_csrf(guard: Guard, request: Request, api: bool) -> None:
    """A POST made with the cookie must carry the CSRF token (the ``csrf`` form field, or the
    ``X-CSRF-Token`` header); one made with the bearer token cannot come from a page."""
    if request.scope.get("console.auth") == "bearer":
        return
    offered = request.headers.get("x-csrf-token")
    if offered is None and not api:
        form = await request.form()  # Starlette keeps it: the view reads it again for free
        field = form.get("csrf")
        offered = field if isinstance(field, str) else None
    if not guard.csrf_ok(offered):
        raise ConsoleError(403, "this request is missing the console's CSRF token")


def flash(done: str | None) -> str:
    """The words for a ``?done=`` code that a POST redirected with (codes, not text: a link
    cannot make the console say something it did not do)."""
    if not done:
        return ""
    fixed = {
        "saved": "Saved. The edit puts the row back on the stream: it is being sent.",
        "refired": "Re-fired: the row is back on the stream and is being sent.",
        "cancelled": "Cancelled: the row is deleted and will not be sent.",
        "resent": "A copy of the mail as sent is this new row: it is being sent.",
        "template-saved": "Saved as the current version: rows that name this template render "
        "it from now on (re-fire the rows that failed on it).",
        "test-sent": "A test row naming this version, with its example vars, is being sent.",
        "suppressed": "Suppressed: rows to this address fail `suppressed` until it is lifted.",
        "lifted": "Lifted: mail goes to this address again (re-fire its failed rows to send them).",
    }
    if done in fixed:
        return fixed[done]
    resumed = re.fullmatch(r"resumed-(\d+)", done)
    if resumed:
        return f"Resumed: {resumed.group(1)} paused row(s) re-fired, oldest first."
    match = re.fullmatch(r"refired-(\d+)-of-(\d+)", done)
    if match:
        fired, total = match.groups()
        changed = int(total) - int(fired)
        rest = f"; {changed} had changed meanwhile and were left alone" if changed else ""
        return f"Re-fired {fired} of {total} rows{rest}."
    return ""


def _error(ctx: Context, request: Request, status: int, message: str, api: bool) -> Response:
    if api:
        return JSONResponse({"error": message}, status_code=status)
    html = ctx.templates.get_template("error.html").render(
        request=request, message=message, status=status, target=ctx.target, query=_query
    )
    return HTMLResponse(html, status_code=status)


def _query(**params: Any) -> str:
    """A query string of the non-empty ``params``, for links that keep a list's filters."""
    return urlencode({k: v for k, v in params.items() if v})


def _age(stamp: Any) -> str:
    then = parse_iso(stamp)
    if then is None:
        return ""
    seconds = (datetime.now(UTC) - then).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            break
    else:
        amount = f"{int(seconds)} s"
    return f"in {amount}" if future else f"{amount} ago"


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "status_code"}
