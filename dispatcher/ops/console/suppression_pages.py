"""The console's Suppressions page: the list (searched, by scope), an entry added with a reason,
one lifted after a confirmation; each change kept with who and when on the entry."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from dispatcher.model.row import checked_address, normalise_address
from dispatcher.ops.console.context import ConsoleError, Context, Form, done
from dispatcher.ops.suppressions import filtered, scope_of
from dispatcher.recipients.suppression import Suppression, SuppressionList
from dispatcher.support.clock import iso_utc

__all__ = ["suppression_remove", "suppressions_page"]

#: Entries a page lists at most (the list is read whole: a Scan, for people).
SHOWN = 500


def suppressions_page(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """GET: the list, filtered by ``q`` (part of an address) and ``scope``; POST: add one."""
    suppressions = _list(ctx)
    if request.method == "POST":
        return _add(suppressions, request, form)
    params = request.query_params
    search = normalise_address(params.get("q") or "")
    scope = _scope(params.get("scope") or "") if params.get("scope") else None
    entries = [
        e for e in filtered(suppressions.all(), scope=scope) if not search or search in e.address
    ]
    entries.sort(key=lambda e: e.added_at, reverse=True)
    return {
        "filters": {"q": search, "scope": scope or ""},
        "entries": [{**asdict(e), "why": e.describe()} for e in entries[:SHOWN]],
        "truncated": len(entries) > SHOWN,
    }


def suppression_remove(ctx: Context, request: Request, form: Form) -> Response | dict[str, Any]:
    """GET asks; POST lifts the entry (``address``, ``scope``), kept with who and when."""
    source = request.query_params if request.method == "GET" else form
    address = normalise_address(str(source.get("address") or ""))
    scope = _scope(str(source.get("scope") or "all"))
    if "@" not in address:
        raise ConsoleError(400, "address: which entry to lift")
    what = f"{address}" + (f" for {scope} mail" if scope != "all" else "")
    if request.method == "GET":
        return {"address": address, "scope": scope, "question": f"Lift the suppression of {what}"}
    now = iso_utc(datetime.now(UTC))
    if not _list(ctx).remove(address, now=now, scope=scope, by="console"):
        raise ConsoleError(409, f"{what} is not suppressed (lifted meanwhile?)")
    query = urlencode({"q": address})
    return done(request, f"/suppressions?{query}", "lifted", {"lifted": address, "scope": scope})


def _add(suppressions: SuppressionList, request: Request, form: Form) -> Response:
    try:
        address = checked_address(str(form.get("address") or "").strip())
    except ValueError as exc:
        raise ConsoleError(400, f"address: {exc}") from None
    reason = str(form.get("reason") or "").strip()
    if not reason:
        raise ConsoleError(400, "reason: say why (it is kept with the entry)")
    entry = Suppression(
        address=address,
        reason="OPERATOR",
        added_at=iso_utc(datetime.now(UTC)),
        message=reason[:500],
        scope=_scope(str(form.get("scope") or "all")),
        added_by="console",
    )
    suppressions.add(entry)
    query = urlencode({"q": address})
    return done(request, f"/suppressions?{query}", "suppressed", {"added": asdict(entry)})


def _scope(value: str) -> str:
    try:
        return scope_of(value.strip() or None)
    except ValueError as exc:
        raise ConsoleError(400, f"scope: {exc}") from None


def _list(ctx: Context) -> SuppressionList:
    if ctx.admin.suppressions is None:
        raise ConsoleError(404, "this stack keeps no suppression list")
    return ctx.admin.suppressions
