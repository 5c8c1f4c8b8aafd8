"""The console's pages: what each shows, which query it makes, which write it does.

Every page is a function of the request that builds one dict; the dict is rendered into its
template for a browser, or returned as it is under ``/api`` for scripts, so nothing is only
in the HTML. Writes are POSTs, each one conditional write (or one per row for the bulk
re-fire) on the row as the person saw it: the form carries the row's version, and a row that
changed since is shown again, not overwritten.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dispatcher.clock import parse_iso
from dispatcher.html_text import html_to_text
from dispatcher.message import Message, parse_message
from dispatcher.ops.admin import LISTABLE_STATUSES, Admin, BadPageTokenError, Page, SentCounts
from dispatcher.ops.console.chart import Timeline
from dispatcher.ops.console.forms import (
    JSON_FIELDS,
    LIST_FIELDS,
    TEXT_FIELDS,
    form_values,
    read_form,
    row_version,
    split_problems,
)
from dispatcher.ops.console.security import PREVIEW_POLICY, Guard, TokenMiddleware
from dispatcher.row import ErrorKind, Row, plain, string_attribute
from dispatcher.store import StoreError
from dispatcher.unsettled import describe_unsettled

__all__ = ["ConsoleError", "create_app"]

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
#: How long the overview's history counts (a Scan) are reused before they are read again.
SENT_COUNTS_TTL = 30.0
#: Seconds between the overview's own refreshes.
REFRESH_SECONDS = 10
ERROR_KINDS = tuple(k.value for k in ErrorKind)


#: A POST's fields (a form, or the JSON object a script sent); empty for a GET.
Form = dict[str, str]


class ConsoleError(Exception):
    """A request the console cannot serve, with the status and the words to answer it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: A page: what it shows (a dict, rendered or returned as JSON) or a response of its own.
View = Callable[["_Context", Request, Form], "Response | dict[str, Any]"]


@dataclass(frozen=True)
class _Context:
    admin: Admin
    guard: Guard
    default_from_email: str
    target: str
    templates: Environment
    sent_cache: _SentCache


class _SentCache:
    """The overview's sent and bounced counts, read at most every :data:`SENT_COUNTS_TTL`."""

    def __init__(self, admin: Admin) -> None:
        self._admin = admin
        self._lock = threading.Lock()
        self._value: tuple[float, dict[str, SentCounts]] | None = None

    def get(self) -> dict[str, SentCounts]:
        with self._lock:
            if self._value is not None and time.monotonic() - self._value[0] < SENT_COUNTS_TTL:
                return self._value[1]
            now = datetime.now(UTC)
            counts = self._admin.sent_since(
                {"hour": now - timedelta(hours=1), "day": now - timedelta(days=1)}
            )
            self._value = (time.monotonic(), counts)
            return counts


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
    context = _Context(admin, guard, default_from_email, target, templates, _SentCache(admin))

    def page(view: View, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            api = _is_api(request)
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
    for path, view, name, methods in (
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
    ):
        endpoint = page(view, name)
        routes.append(Route(path, endpoint, methods=methods))
        api_path = "/api/overview" if path == "/" else f"/api{path}"
        routes.append(Route(api_path, endpoint, methods=methods))
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=routes)
    app.add_middleware(TokenMiddleware, guard=guard, allowed_hosts=allowed_hosts)
    app.state.guard = guard
    return app


def overview(ctx: _Context, request: Request, form: Form) -> dict[str, Any]:
    counts = ctx.admin.counts()
    sent = ctx.sent_cache.get()
    now = datetime.now(UTC)
    return {
        "counts": {
            "pending": counts.pending,
            "scheduled": counts.scheduled,
            "deferred": counts.deferred,
            "failed": sum(counts.failed.values()),
            "failed_by_kind": dict(sorted(counts.failed.items())),
            "at_least": sorted(counts.at_least),
        },
        "oldest": {
            "failed_at": counts.oldest_failed_at,
            "deferred_at": counts.oldest_deferred_at,
        },
        "sent": {
            window: {
                **{k: v for k, v in asdict(value).items() if k != "times"},
                "bounce_share": round(value.bounce_share, 4),
            }
            for window, value in sent.items()
        },
        "flow": _flow(now, sent["day"].times, counts.stamped_at),
        "refresh_seconds": REFRESH_SECONDS,
        "as_of": now.isoformat(timespec="seconds"),
    }


def _flow(
    now: datetime, sent: tuple[str, ...], stamped: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """Sent, deferred and failed per minute over the last hour and per hour over the last
    day (the chart's data, and the JSON twin's), from what the overview read anyway. The
    buckets end at the next whole minute or hour, so they stay put between refreshes."""
    times: dict[str, tuple[str, ...]] = {"sent": sent, **stamped}
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    out = {}
    for name, end, step, buckets in (
        ("hour", minute, timedelta(minutes=1), 60),
        ("day", hour, timedelta(hours=1), 24),
    ):
        timeline = Timeline.build(end, step, buckets, times)
        out[name] = {
            "end": end.isoformat(timespec="seconds"),
            "step_seconds": int(step.total_seconds()),
            "counts": timeline.counts,
        }
    return out


def _chart(flow: dict[str, Any], title: str) -> Markup:
    """The SVG of one of :func:`_flow`'s timelines (a template global)."""
    end = datetime.fromisoformat(flow["end"])
    timeline = Timeline(end, timedelta(seconds=flow["step_seconds"]), flow["counts"])
    return Markup(timeline.svg(title))  # noqa: S704  (built from numbers; the title is escaped)


def rows(ctx: _Context, request: Request, form: Form) -> dict[str, Any]:
    params = request.query_params
    status = params.get("status") or None
    kind = params.get("kind") or None
    search = (params.get("q") or "").strip()
    if status is not None and status not in LISTABLE_STATUSES:
        raise ConsoleError(400, f"status must be one of {', '.join(LISTABLE_STATUSES)}")
    if kind is not None and kind not in ERROR_KINDS:
        raise ConsoleError(400, f"kind must be one of {', '.join(ERROR_KINDS)}")
    if search and "@" not in search:  # an id: one GetItem
        row = ctx.admin.get_row(search)
        page = Page([dict(row.image)] if row is not None else [], None, "GetItem by id")
    else:
        page = ctx.admin.page_rows(
            status=status, error_kind=kind, recipient=search or None,
            token=params.get("page") or None, limit=PAGE_SIZE,
        )  # fmt: skip
    return {
        "filters": {"status": status, "kind": kind, "q": search},
        "rows": [_row_summary(item) for item in page.items],
        "next_page": page.next_token,
        "source": page.source,
    }


def row_page(ctx: _Context, request: Request, form: Form) -> dict[str, Any]:
    row_id = request.path_params["row_id"]
    row = ctx.admin.get_row(row_id)
    history_items = [plain(h) for h in ctx.admin.history(row_id)]
    if row is None and not history_items:
        raise ConsoleError(404, f"no row and no history for id {row_id!r}")
    data: dict[str, Any] = {"id": row_id, "row": None, "history": history_items}
    if row is not None:
        attributes = plain(row.image)
        last_error = string_attribute(row.image, "last_error") or ""
        parsed = parse_message(row, default_from_email=ctx.default_from_email)
        data["row"] = {
            "attributes": attributes,
            "status": attributes.get("status", "pending"),
            "version": row_version(row.image),
            "problems": [
                {"attribute": name, "problem": problem}
                for name, problem in split_problems(last_error)
            ],
            "preview": _preview(row, parsed),
            "in_flight": row.in_flight,
            "unsettled": (
                describe_unsettled(row.unsettled, row.retry_at) if row.unsettled else None
            ),
        }
    return data


def preview(ctx: _Context, request: Request, form: Form) -> Response:
    row = ctx.admin.get_row(request.path_params["row_id"])
    html = string_attribute(row.image, "html") if row is not None else None
    if html is None:
        raise ConsoleError(404, "this row has no html body")
    return HTMLResponse(
        html,
        headers={"content-security-policy": PREVIEW_POLICY, "x-frame-options": "SAMEORIGIN"},
    )


def edit(ctx: _Context, request: Request, form: Form) -> Response | dict[str, Any]:
    row_id = request.path_params["row_id"]
    row = ctx.admin.get_row(row_id)
    if row is None:
        raise ConsoleError(404, f"no row with id {row_id!r} (sent, or cancelled)")
    base = {"id": row_id, "fields": _fields(), "current": plain(row.image)}
    if request.method == "GET":
        return {**base, "values": form_values(row.image), "version": row_version(row.image),
                "problems": {}, "conflict": False}  # fmt: skip
    result, shown = read_form(form, row, default_from_email=ctx.default_from_email)
    loaded = str(form.get("version", ""))
    if loaded != row_version(row.image):
        return {**base, "values": shown, "version": row_version(row.image), "problems": {},
                "conflict": True, "status_code": 409}  # fmt: skip
    if not result.ok:
        return {**base, "values": shown, "version": loaded, "problems": result.problems,
                "conflict": False, "status_code": 422}  # fmt: skip
    if result.request == row.request:
        raise ConsoleError(400, "nothing changed: use Re-fire to send the row again as it is")
    if not ctx.admin.edit(row, result.request):
        current = ctx.admin.get_row(row_id)
        return {**base, "values": shown, "problems": {}, "conflict": True, "status_code": 409,
                "version": row_version(current.image) if current else ""}  # fmt: skip
    return _done(request, _url("rows", row_id), "saved", {"id": row_id, "result": "saved"})


def refire(ctx: _Context, request: Request, form: Form) -> Response | dict[str, Any]:
    return _one_row_action(ctx, request, form, "refire")


def cancel(ctx: _Context, request: Request, form: Form) -> Response | dict[str, Any]:
    return _one_row_action(ctx, request, form, "cancel")


def _one_row_action(
    ctx: _Context, request: Request, form: Form, action: str
) -> Response | dict[str, Any]:
    row_id = request.path_params["row_id"]
    row = ctx.admin.get_row(row_id)
    if row is None:
        raise ConsoleError(404, f"no row with id {row_id!r} (sent, or cancelled)")
    if request.method == "GET":
        words = (
            f"Re-fire {row_id}: send it again as it is now"
            if action == "refire"
            else f"Cancel {row_id}: delete it from the send table, so it is never sent"
        )
        warning = (
            "The dispatcher may be sending this row right now: cancelling cannot promise "
            "that it is not sent." if action == "cancel" and row.in_flight else ""
        )  # fmt: skip
        return {"action": _url(action, row_id), "question": words, "warning": warning,
                "version": row_version(row.image), "ids": [row_id],
                "back": _url("rows", row_id)}  # fmt: skip
    if str(form.get("version", "")) != row_version(row.image):
        raise ConsoleError(409, f"{row_id} changed since you opened it; look at it again")
    done = ctx.admin.refire(row) if action == "refire" else ctx.admin.cancel(row)
    if not done:
        raise ConsoleError(409, f"{row_id} changed meanwhile (sent, or re-stamped); nothing done")
    word = "refired" if action == "refire" else "cancelled"
    where = _url("rows", row_id) if action == "refire" else "/rows"
    return _done(request, where, word, {"id": row_id, "result": word})


def bulk_refire(ctx: _Context, request: Request, form: Form) -> Response | dict[str, Any]:
    source = request.query_params if request.method == "GET" else form
    kind = str(source.get("kind") or "")
    if kind not in ERROR_KINDS:
        raise ConsoleError(400, f"kind must be one of {', '.join(ERROR_KINDS)}")
    if request.method == "GET":  # the ids are enough to ask: the index alone
        ids = [i for page in ctx.admin.stamped_ids("failed", error_kind=kind) for i in page]
        return {"action": "/refire-failed", "kind": kind, "ids": ids, "version": "",
                "question": f"Re-fire all {len(ids)} failed rows of kind {kind}",
                "warning": "" if ids else "There is no failed row of this kind.",
                "back": f"/rows?status=failed&kind={kind}"}  # fmt: skip
    results = []
    for row in ctx.admin.stamped_rows("failed", error_kind=kind):
        # each as read just now: a row that moved on since is left alone
        fired = row.status == "failed" and ctx.admin.refire(row)
        results.append({"id": row.id, "result": "re-fired" if fired else "changed"})
    fired_count = sum(r["result"] == "re-fired" for r in results)
    return _done(
        request, f"/rows?status=failed&kind={kind}", f"refired-{fired_count}-of-{len(results)}",
        {"kind": kind, "results": results},
    )  # fmt: skip


def history(ctx: _Context, request: Request, form: Form) -> dict[str, Any]:
    params = request.query_params
    row_id = (params.get("id") or "").strip() or None
    recipient = (params.get("to") or "").strip() or None
    since = _day(params.get("since"), "since")
    until = _day(params.get("until"), "until", next_day=True)
    page = ctx.admin.page_history(
        row_id=row_id, recipient=recipient, since=since, until=until,
        token=params.get("page") or None, limit=PAGE_SIZE,
    )  # fmt: skip
    return {
        "filters": {
            "id": row_id or "",
            "to": recipient or "",
            "since": params.get("since") or "",
            "until": params.get("until") or "",
        },
        "items": [plain(item) for item in page.items],
        "next_page": page.next_token,
        "source": page.source,
    }


def _row_summary(item: dict[str, Any]) -> dict[str, Any]:
    values = plain(item)
    return {
        "id": values.get("id"),
        "status": values.get("status", "pending"),
        "error_kind": values.get("error_kind"),
        "reason": values.get("last_error"),
        "to": values.get("to"),
        "subject": values.get("subject"),
        "attempts": values.get("attempts"),
        "failed_at": values.get("failed_at"),
        "retry_at": values.get("retry_at"),
    }


def _preview(row: Row, parsed: Message | list[str]) -> dict[str, Any]:
    """The mail as it would be sent: the parser's text part (derived from the HTML where the
    row has none) and whether there is HTML to show in the sandboxed frame."""
    html = string_attribute(row.image, "html")
    if isinstance(parsed, Message):
        text = parsed.text
        subject = parsed.subject
    else:  # the row as it stands, the text part made from the HTML as the parser would
        text = string_attribute(row.image, "text") or (html_to_text(html) if html else "")
        subject = string_attribute(row.image, "subject") or ""
    return {
        "subject": subject,
        "text": text,
        "has_html": html is not None,
        "valid": isinstance(parsed, Message),
    }


def _fields() -> dict[str, tuple[str, ...]]:
    return {"text": TEXT_FIELDS, "list": LIST_FIELDS, "json": JSON_FIELDS}


async def _submitted(request: Request) -> Form:
    if _is_api(request) and request.headers.get("content-type", "").startswith("application/json"):
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
    }
    if done in fixed:
        return fixed[done]
    match = re.fullmatch(r"refired-(\d+)-of-(\d+)", done)
    if match:
        fired, total = match.groups()
        changed = int(total) - int(fired)
        rest = f"; {changed} had changed meanwhile and were left alone" if changed else ""
        return f"Re-fired {fired} of {total} rows{rest}."
    return ""


def _done(request: Request, where: str, done: str, data: dict[str, Any]) -> Response:
    if _is_api(request):
        return JSONResponse(data)
    separator = "&" if "?" in where else "?"
    return RedirectResponse(f"{where}{separator}{urlencode({'done': done})}", status_code=303)


def _is_api(request: Request) -> bool:
    """A request to a page's JSON twin."""
    return request.url.path.startswith("/api/")


def _error(ctx: _Context, request: Request, status: int, message: str, api: bool) -> Response:
    if api:
        return JSONResponse({"error": message}, status_code=status)
    html = ctx.templates.get_template("error.html").render(
        request=request, message=message, status=status, target=ctx.target, query=_query
    )
    return HTMLResponse(html, status_code=status)


def _url(action: str, row_id: str) -> str:
    """A row's page (``rows``) or action, its id quoted ("/" too: the path ends with it)."""
    return f"/{action}/{quote(row_id, safe='')}"


def _day(value: str | None, name: str, *, next_day: bool = False) -> str | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConsoleError(400, f"{name} must be a date (YYYY-MM-DD), not {value!r}") from None
    return (day + timedelta(days=1 if next_day else 0)).strftime("%Y-%m-%d")


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
