"""The console's pages that read: the overview, the lists, a row, the history.

Each returns the dict its template renders and its ``/api`` twin returns as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from dispatcher.model.html_text import html_to_text
from dispatcher.model.message import Message
from dispatcher.model.row import Row, plain, string_attribute
from dispatcher.model.row import normalise_address as normalise
from dispatcher.model.unsettled import describe_unsettled
from dispatcher.ops.admin import LISTABLE_STATUSES, Page, SentCounts
from dispatcher.ops.console.chart import Timeline
from dispatcher.ops.console.context import ERROR_KINDS, PAGE_SIZE, ConsoleError, Context, Form
from dispatcher.ops.console.forms import row_version, split_problems
from dispatcher.ops.console.security import PREVIEW_POLICY
from dispatcher.ops.resend import ResendError, latest_send
from dispatcher.templates.rows import parse_row

__all__ = [
    "history",
    "overview",
    "preview",
    "recipient",
    "row_page",
    "rows",
    "sandboxed",
    "sent_item",
    "sent_preview",
]

#: Seconds between the overview's own refreshes.
REFRESH_SECONDS = 10
#: Mail a recipient's page lists at most, newest first.
RECIPIENT_MAIL = 200


def overview(ctx: Context, request: Request, form: Form) -> dict[str, Any]:
    counts = ctx.admin.counts()
    sent = ctx.sent_cache.get()
    now = datetime.now(UTC)
    return {
        "counts": {
            "pending": counts.pending,
            "scheduled": counts.scheduled,
            "paused": counts.paused,
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
                **{k: v for k, v in asdict(value).items() if not k.endswith("times")},
                "bounce_share": round(value.bounce_share, 4),
            }
            for window, value in sent.items()
        },
        "flow": _flow(now, sent["day"], counts.stamped_at),
        "reputation": ctx.admin.guard.all_standings() if ctx.admin.guard else {},
        "refresh_seconds": REFRESH_SECONDS,
        "as_of": now.isoformat(timespec="seconds"),
    }


def _flow(
    now: datetime, sent: SentCounts, stamped: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """Sent (and delivered), deferred and failed per minute over the last hour and per hour
    over the last day (the chart's data, and the JSON twin's), from what the overview read
    anyway. The buckets end at the next whole minute or hour, so they stay put between
    refreshes."""
    times = {"sent": sent.times, "delivered": sent.delivered_times, **stamped}
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


def rows(ctx: Context, request: Request, form: Form) -> dict[str, Any]:
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


def row_page(ctx: Context, request: Request, form: Form) -> dict[str, Any]:
    row_id = request.path_params["row_id"]
    row = ctx.admin.get_row(row_id)
    history_items = [plain(h) for h in ctx.admin.history(row_id)]
    if row is None and not history_items:
        raise ConsoleError(404, f"no row and no history for id {row_id!r}")
    data: dict[str, Any] = {"id": row_id, "row": None, "history": history_items}
    if row is not None:
        attributes = plain(row.image)
        last_error = string_attribute(row.image, "last_error") or ""
        parsed = parse_row(row, ctx.admin.templates, default_from_email=ctx.default_from_email)
        data["row"] = {
            "attributes": attributes,
            "status": attributes.get("status", "pending"),
            "version": row_version(row.image),
            "problems": [
                {"attribute": name, "problem": problem}
                for name, problem in split_problems(last_error)
            ],
            "preview": _preview(row, parsed if isinstance(parsed, Message) else parsed.problems),
            "in_flight": row.in_flight,
            "unsettled": (
                describe_unsettled(row.unsettled, row.retry_at) if row.unsettled else None
            ),
        }
    return data


def preview(ctx: Context, request: Request, form: Form) -> Response:
    """The row's HTML for the sandboxed frame: its own, or its template's, rendered."""
    row = ctx.admin.get_row(request.path_params["row_id"])
    html = string_attribute(row.image, "html") if row is not None else None
    if row is not None and "template" in row.image:
        parsed = parse_row(row, ctx.admin.templates, default_from_email=ctx.default_from_email)
        html = parsed.html if isinstance(parsed, Message) else None
    if html is None:
        raise ConsoleError(404, "this row has no html body")
    return sandboxed(html)


def sandboxed(html: str) -> Response:
    return HTMLResponse(
        html,
        headers={"content-security-policy": PREVIEW_POLICY, "x-frame-options": "SAMEORIGIN"},
    )


def sent_item(ctx: Context, request: Request, form: Form) -> dict[str, Any]:
    """One send: its history item (delivery status, opens, bounce) and the mail as sent,
    where it is still kept, with the way to send it again."""
    row_id, sent_at = _send_of(ctx, request)
    [item] = [plain(h) for h in ctx.admin.history(row_id) if h["sent_at"]["S"] == sent_at]
    mail = ctx.admin.store.sent_mail(row_id, sent_at)
    return {
        "id": row_id,
        "sent_at": sent_at,
        "item": item,
        "mail": mail,
        "kept": ctx.admin.store.sent_mail_table is not None,
    }


def sent_preview(ctx: Context, request: Request, form: Form) -> Response:
    """The HTML of the mail as sent, for the sandboxed frame (the row preview's rules)."""
    row_id, sent_at = _send_of(ctx, request)
    mail = ctx.admin.store.sent_mail(row_id, sent_at)
    html = mail.get("html") if mail is not None else None
    if not isinstance(html, str):
        raise ConsoleError(404, "this mail as sent has no html body (or it is no longer kept)")
    return sandboxed(html)


def _send_of(ctx: Context, request: Request) -> tuple[str, str]:
    """The id and ``sent_at`` a send's page names (``?at=``; the latest send without it)."""
    row_id = request.path_params["row_id"]
    try:
        return row_id, latest_send(ctx.admin, row_id, request.query_params.get("at") or None)
    except ResendError as exc:
        raise ConsoleError(404, str(exc)) from None


def history(ctx: Context, request: Request, form: Form) -> dict[str, Any]:
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


def recipient(ctx: Context, request: Request, form: Form) -> dict[str, Any]:
    """Everything about one address on one screen: every mail sent to it with its delivery
    status (the history's by-recipient index), the rows still waiting for it, and whether it
    is suppressed and why."""
    address = normalise(request.path_params["address"])
    if "@" not in address or len(address) > 254:
        raise ConsoleError(400, f"{address!r} is not an email address")
    sent = [plain(item) for item in islice(ctx.admin.history_to(address), RECIPIENT_MAIL)]
    waiting = ctx.admin.page_rows(recipient=address, limit=PAGE_SIZE)
    suppression = ctx.admin.suppression(address)
    return {
        "address": address,
        "mail": sent,
        "truncated": len(sent) == RECIPIENT_MAIL,
        "waiting": [
            _row_summary(item)
            for item in waiting.items
            if normalise(str(plain(item).get("to", ""))) == address
        ],
        "suppressed": asdict(suppression) if suppression is not None else None,
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
        html = parsed.html if parsed.template else html
    else:  # the row as it stands, the text part made from the HTML as the parser would
        text = string_attribute(row.image, "text") or (html_to_text(html) if html else "")
        subject = string_attribute(row.image, "subject") or ""
    return {
        "subject": subject,
        "text": text,
        "has_html": html is not None,
        "valid": isinstance(parsed, Message),
    }


def _day(value: str | None, name: str, *, next_day: bool = False) -> str | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConsoleError(400, f"{name} must be a date (YYYY-MM-DD), not {value!r}") from None
    return (day + timedelta(days=1 if next_day else 0)).strftime("%Y-%m-%d")
