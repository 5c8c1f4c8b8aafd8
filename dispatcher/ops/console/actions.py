"""The console's pages that write: edit, re-fire, cancel, re-fire every failed row of a kind.

A GET shows the form or asks the question; the POST makes one conditional write (one per row
for the bulk re-fire) on the row as the person saw it: the form carries the row's version, and a
row that changed since is shown again, not overwritten.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from dispatcher.model.row import checked_address, plain
from dispatcher.ops.admin import RowExistsError
from dispatcher.ops.console.context import ERROR_KINDS, ConsoleError, Context, Form, done, row_url
from dispatcher.ops.console.forms import (
    JSON_FIELDS,
    LIST_FIELDS,
    TEXT_FIELDS,
    form_values,
    read_form,
    row_version,
)
from dispatcher.ops.resend import ResendError, latest_send
from dispatcher.ops.resend import resend as resend_mail

__all__ = ["bulk_refire", "cancel", "edit", "refire", "resend", "resume_category"]


def edit(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    row_id = request.path_params["row_id"]
    row = ctx.admin.get_row(row_id)
    if row is None:
        raise ConsoleError(404, f"no row with id {row_id!r} (sent, or cancelled)")
    base = {"id": row_id, "fields": _fields(), "current": plain(row.image)}
    if request.method == "GET":
        return {**base, "values": form_values(row.image), "version": row_version(row.image),
                "problems": {}, "conflict": False}  # fmt: skip
    result, shown = read_form(
        form, row, default_from_email=ctx.default_from_email, templates=ctx.admin.templates
    )
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
    return done(request, row_url("rows", row_id), "saved", {"id": row_id, "result": "saved"})


def refire(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    return _one_row_action(ctx, request, form, "refire")


def cancel(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    return _one_row_action(ctx, request, form, "cancel")


def _one_row_action(
    ctx: Context, request: Request, form: Form, action: str
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
        return {"action": row_url(action, row_id), "question": words, "warning": warning,
                "version": row_version(row.image), "ids": [row_id],
                "back": row_url("rows", row_id)}  # fmt: skip
    if str(form.get("version", "")) != row_version(row.image):
        raise ConsoleError(409, f"{row_id} changed since you opened it; look at it again")
    written = ctx.admin.refire(row) if action == "refire" else ctx.admin.cancel(row)
    if not written:
        raise ConsoleError(409, f"{row_id} changed meanwhile (sent, or re-stamped); nothing done")
    word = "refired" if action == "refire" else "cancelled"
    where = row_url("rows", row_id) if action == "refire" else "/rows"
    return done(request, where, word, {"id": row_id, "result": word})


def resend(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """Send a mail again as it was sent: a new row, subject to everything a row is. The GET
    asks (and offers another address); the POST inserts the copy and shows the new row."""
    row_id = request.path_params["row_id"]
    source = request.query_params if request.method == "GET" else form
    try:
        sent_at = latest_send(ctx.admin, row_id, str(source.get("at") or "") or None)
    except ResendError as exc:
        raise ConsoleError(404, str(exc)) from None
    back = f"{row_url('sent', row_id)}?{urlencode({'at': sent_at})}"
    if request.method == "GET":
        kept = ctx.admin.store.sent_mail(row_id, sent_at) is not None
        return {"id": row_id, "sent_at": sent_at, "kept": kept, "back": back,
                "action": row_url("resend", row_id), "to": ""}  # fmt: skip
    to = str(form.get("to") or "").strip()
    try:
        address = _address(to) if to else None
        done_ = resend_mail(ctx.admin, row_id, sent_at=sent_at, to=address)
    except ResendError as exc:
        raise ConsoleError(409, str(exc)) from None
    except RowExistsError as exc:
        raise ConsoleError(409, str(exc)) from None
    return done(request, row_url("rows", done_.inserted), "resent",
                {"inserted": done_.inserted, "resent_from": done_.resent_from})  # fmt: skip


def _address(value: str) -> str:
    try:
        return checked_address(value)
    except ValueError as exc:
        raise ConsoleError(400, str(exc)) from None


def bulk_refire(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
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
    return done(
        request, f"/rows?status=failed&kind={kind}", f"refired-{fired_count}-of-{len(results)}",
        {"kind": kind, "results": results},
    )  # fmt: skip


def _fields() -> dict[str, tuple[str, ...]]:
    return {"text": TEXT_FIELDS, "list": LIST_FIELDS, "json": JSON_FIELDS}


def resume_category(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """A paused category resumed: GET asks, POST lifts the pause and re-fires its rows."""
    from dispatcher.ops.reputation import NotPausedError, resume

    source = request.query_params if request.method == "GET" else form
    category = str(source.get("category") or "")
    if not category:
        raise ConsoleError(400, "category: which category to resume")
    if request.method == "GET":
        return {"action": "/resume", "kind": category, "ids": [category], "version": "",
                "question": f"Resume {category} mail: re-fire its paused rows, oldest first",
                "warning": "", "back": "/", "field": "category"}  # fmt: skip
    try:
        done_ = resume(ctx.admin, category, by="console")
    except NotPausedError as exc:
        raise ConsoleError(409, str(exc)) from None
    return done(request, "/", f"resumed-{len(done_.refired)}", {"resumed": category,
                "refired": done_.refired, "changed": done_.changed})  # fmt: skip
