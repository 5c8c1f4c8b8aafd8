"""The send table: ``send``, ``ls``, ``show``, ``retry``, ``cancel``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dispatcher.model.row import ErrorKind, plain
from dispatcher.model.unsettled import describe_unsettled
from dispatcher.ops.cli.common import (
    CommandError,
    JsonOption,
    LiveOption,
    age,
    app,
    clip,
    deliveries_of,
    delivery_line,
    err,
    errors_as_exit,
    fail,
    json_object,
    key_value,
    out,
    read_json,
    read_jsonl,
    take,
    target_of,
)


@app.command()
def send(
    ctx: typer.Context,
    to: Annotated[str | None, typer.Option(help="Recipient address.")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject line.")] = None,
    text: Annotated[str | None, typer.Option(help="Plain-text body.")] = None,
    html: Annotated[str | None, typer.Option(help="HTML body.")] = None,
    row_id: Annotated[str | None, typer.Option("--id", help="Row id (default: a UUID).")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Sender address.")] = None,
    from_name: Annotated[str | None, typer.Option(help="Sender name.")] = None,
    cc: Annotated[list[str] | None, typer.Option(help="Cc address (repeatable).")] = None,
    bcc: Annotated[list[str] | None, typer.Option(help="Bcc address (repeatable).")] = None,
    encode: Annotated[str | None, typer.Option(help="UTF-8 or ISO-2022-JP.")] = None,
    insert_code: Annotated[
        list[str] | None,
        typer.Option(help="Personalisation KEY=VALUE, filling __KEY__ (repeatable)."),
    ] = None,
    send_after: Annotated[
        str | None, typer.Option(help="ISO-8601 time with offset; not sent before then.")
    ] = None,
    reply_to: Annotated[str | None, typer.Option(help="Reply-To address.")] = None,
    unsubscribe_url: Annotated[
        str | None, typer.Option(help="List-Unsubscribe URL (http or https).")
    ] = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option(
            help="A file to attach (repeatable): uploaded to the stack's attachments bucket "
            "under ID/NAME and named in the row."
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="A JSON object with the row's attributes.")
    ] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Many rows: one JSON object per line.")] = None,
    template: Annotated[
        str | None,
        typer.Option(help="A template (NAME or NAME@VERSION) instead of subject/text/html."),
    ] = None,
    variables: Annotated[
        str | None, typer.Option("--vars", help="The template's values: a JSON object (or @FILE).")
    ] = None,
    language: Annotated[str | None, typer.Option(help="The template's language variant.")] = None,
    category: Annotated[
        str | None,
        typer.Option(
            help="What kind of mail (newsletter...; MAIL_CATEGORIES); default: transactional."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Insert rows into the send table, as an application would. Each row is checked first
    (a template row rendered against the stack's templates); nothing is inserted if any row
    is malformed."""
    with errors_as_exit():
        if jsonl is not None:
            rows = read_jsonl(jsonl)
        elif file is not None:
            rows = [read_json(file, "row file")]
        else:
            codes = dict(key_value(item) for item in insert_code or [])
            rows = [
                _given(
                    id=row_id, to=to, subject=subject, text=text, html=html, **{"from": sender},
                    from_name=from_name, cc=cc or None, bcc=bcc or None, encode=encode,
                    insert_code=codes or None, send_after=send_after, reply_to=reply_to,
                    list_unsubscribe_url=unsubscribe_url, template=template, language=language,
                    category=category,
                    vars=json_object(variables, "--vars") if variables else None,
                )
            ]  # fmt: skip
        if attach:
            if len(rows) != 1:
                raise CommandError("--attach goes with a single row, not --file/--jsonl")
            rows[0] = _attach(ctx, {"id": str(uuid.uuid4()), **rows[0]}, attach)
        target = target_of(ctx)
        items = [
            _checked_item(row, label=f"row {n}" if len(rows) > 1 else "the row", target=target)
            for n, row in enumerate(rows, 1)
        ]
        admin = target.admin
        inserted = []
        progress: Iterable[dict[str, Any]] = items
        if len(items) > 1 and not as_json:
            from rich.progress import track

            progress = track(items, description="inserting", console=err)
        for item in progress:
            admin.put_row(item)
            inserted.append(item["id"]["S"])
    if as_json:
        typer.echo(json.dumps({"inserted": inserted}))
    else:
        for row_id_ in inserted[:20]:
            out.print(f"inserted {row_id_}")
        if len(inserted) > 20:
            out.print(f"... and {len(inserted) - 20} more")


@app.command("ls")
def list_rows(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="failed, deferred, scheduled, or pending (not yet handled).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to show at most.", min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List the send table: what is waiting, failed or deferred, and why."""
    with errors_as_exit():
        if status not in (None, "failed", "deferred", "scheduled", "pending"):
            raise CommandError(
                f"--status must be failed, deferred, scheduled or pending, not {status!r}"
            )
        admin = target_of(ctx).admin
        if status == "scheduled":
            rows_iter = admin.waiting_rows(status)
        elif status in ("failed", "deferred"):
            rows_iter = admin.stamped_rows(status)
        else:
            err.print("[dim](a paginated Scan of the send table: no index serves this)[/]")
            rows_iter = admin.scan_rows()
            if status == "pending":
                rows_iter = (r for r in rows_iter if "status" not in r.image)
        rows, more = take(rows_iter, limit)
    plain_rows = [plain(r.image) for r in rows]
    if as_json:
        typer.echo(json.dumps({"rows": plain_rows, "truncated": more}, default=str))
        return
    table = Table("id", "status", "attempts", "kind", "last error", "age")
    for row in sorted(plain_rows, key=lambda r: str(r.get("id"))):
        table.add_row(
            str(row["id"]),
            row.get("status", "pending"),
            str(row.get("attempts", "")),
            row.get("error_kind", ""),
            clip(row.get("last_error", ""), 60),
            age(row.get("failed_at")),
        )
    out.print(table)
    if more:
        out.print(f"(first {limit} rows; use --limit for more)")


@app.command()
def show(
    ctx: typer.Context,
    row_id: Annotated[str, typer.Argument(metavar="ID", help="The row's id.")],
    live: LiveOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show one row, its last error and its history."""
    with errors_as_exit():
        admin = target_of(ctx).admin
        row = admin.get_row(row_id)
        history = admin.history(row_id)
        if row is None and not history:
            raise CommandError(f"no row and no history for id {row_id!r}")
        plain_history = [plain(h) for h in history]
        deliveries = deliveries_of(ctx, plain_history) if live else {}
    plain_row = plain(row.image) if row else None
    if as_json:
        document = {"row": plain_row, "history": plain_history}
        if live:
            document["deliveries"] = deliveries
        typer.echo(json.dumps(document, default=str))
        return
    if plain_row is None:
        out.print(f"{row_id}: not in the send table (sent, or cancelled)")
    else:
        _print_row(row_id, plain_row, row)
    for item in plain_history:
        _print_sent(item, deliveries.get(str(item.get("delivery_id"))))


def _print_row(row_id: str, plain_row: dict[str, Any], row: Any) -> None:
    out.print(f"[bold]{row_id}[/]  status: {plain_row.get('status', 'pending')}")
    for key in sorted(plain_row):
        if key not in ("id", "last_error", "unsettled"):
            out.print(f"  {key}: {clip(str(plain_row[key]), 200)}", markup=False)
    if "last_error" in plain_row:
        out.print("  last error:", markup=False)
        for reason in str(plain_row["last_error"]).split("; "):
            out.print(f"    {reason}", markup=False)
    if row.unsettled is not None:
        waiting = describe_unsettled(row.unsettled, row.retry_at)
        out.print(f"  waiting for its look-up: {waiting}", markup=False)


def _print_sent(item: dict[str, Any], delivery: dict[str, Any] | None) -> None:
    """One history item: how it was sent, its bounce, what the provider says now (--live)."""
    confirmed = " - confirmed by look-up" if item.get("confirmed_by") == "lookup" else ""
    out.print(
        f"  sent {item.get('sent_at')} through {item.get('provider', 'blastengine')} as "
        f"delivery {item.get('delivery_id', '?')} ({item.get('attempts')} attempt(s))"
        f"{confirmed}",
        markup=False,
    )
    if item.get("bounce_type"):
        out.print(
            f"    bounced: {item['bounce_type']} at {item.get('bounced_at')} "
            f"({item.get('bounce_address')}, code {item.get('bounce_code', '?')})",
            markup=False,
        )
    if delivery is not None:
        out.print(f"    blastengine now: {delivery_line(delivery)}", markup=False)


@app.command()
def retry(
    ctx: typer.Context,
    row_ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="Rows to re-send.")
    ] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed row.")] = False,
    kind: Annotated[
        str | None,
        typer.Option(
            help="With --all-failed: only this error_kind (invalid, rejected, transient, "
            "rate_limited, config, suppressed, blocked, expired, template, ambiguous: an "
            "ambiguous row is looked up again, never sent blindly; an expired row fails again "
            "unless its expires_at was moved)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-send rows by bumping their revision (only if they are still as they were read)."""
    with errors_as_exit():
        if bool(row_ids) == all_failed:
            raise CommandError("give row ids or --all-failed (one of the two)")
        if kind is not None and not all_failed:
            raise CommandError("--kind goes with --all-failed")
        kinds = [k.value for k in ErrorKind]
        if kind is not None and kind not in kinds:
            raise CommandError(f"--kind must be one of {', '.join(kinds)}, not {kind!r}")
        admin = target_of(ctx).admin
        if all_failed:
            targets = [(r.id, r) for r in admin.stamped_rows("failed", error_kind=kind)]
        else:
            targets = [(i, admin.get_row(i)) for i in row_ids or []]
        results = []
        for row_id, row in targets:
            if row is None:
                results.append({"id": row_id, "result": "not found"})
                continue
            fired = admin.refire(row)
            results.append(
                {"id": row_id, "result": "re-fired" if fired else "changed meanwhile; not re-fired"}
            )
    if as_json:
        typer.echo(json.dumps({"results": results}))
    else:
        for result in results:
            if result["result"] != "not found":
                out.print(f"{result['id']}: {result['result']}")
        if not results:
            out.print("nothing to retry")
    missing = [r["id"] for r in results if r["result"] == "not found"]
    if missing:
        fail(f"no row with id {', '.join(repr(i) for i in missing)}")


@app.command()
def cancel(
    ctx: typer.Context,
    row_id: Annotated[str, typer.Argument(metavar="ID", help="The row to delete.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete a pending row too (one with no status yet), although the dispatcher "
            "may be sending it at this moment.",
        ),
    ] = False,
) -> None:
    """Delete a row that is waiting (failed, deferred or scheduled), so it is never sent.

    The delete is conditional on the row as it was read: a row the dispatcher re-stamped or
    someone edited meanwhile is left alone. If its mail went out anyway (its send was already
    under way), the command says so as an error (exit 2).
    """
    from dispatcher.support.clock import iso_utc

    with errors_as_exit():
        admin = target_of(ctx).admin
        row = admin.get_row(row_id)
        if row is None:
            raise CommandError(f"no row with id {row_id!r}")
        if row.in_flight and not force:
            why = "pending" if row.status is None else f"re-fired at {row.fired_at}"
            raise CommandError(
                f"{row_id} is {why}: the dispatcher may be sending it right now, so "
                "cancelling cannot promise it is not sent. `dispatcher show` tells what "
                "happened; --force deletes it anyway"
            )
        read_at = iso_utc(datetime.now(UTC) - timedelta(seconds=1))
        if not admin.cancel(row):
            raise CommandError(
                f"{row_id} changed since it was read (sent, or re-stamped); not cancelled"
            )
        sent = admin.history(row_id, since=read_at)
    if sent:
        delivery = plain(sent[-1]).get("delivery_id", "?")
        fail(
            f"{row_id} was deleted, but it was already being sent: the history has it as "
            f"delivery {delivery}"
        )
    if row.in_flight:
        out.print(
            f"{row_id}: deleted; its send may have been under way, so it may still go out "
            f"(`dispatcher history --id {row_id}` in a few seconds tells)"
        )
        return
    out.print(f"cancelled {row_id}")


def _checked_item(row: Any, *, label: str, target: Any) -> dict[str, Any]:
    """A plain row as a DynamoDB item, refused with every problem if the dispatcher would
    (a template row rendered with the stack's templates)."""
    from boto3.dynamodb.types import TypeSerializer

    from dispatcher.model.row import Row
    from dispatcher.templates.rows import RowProblems, parse_row

    if not isinstance(row, dict):
        raise CommandError(f"{label} must be a JSON object")
    row = {"id": str(uuid.uuid4()), **row}
    try:
        item: dict[str, Any] = {k: TypeSerializer().serialize(v) for k, v in row.items()}
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{label}: {exc}") from None
    if not isinstance(row["id"], str) or not row["id"]:
        raise CommandError(f"{label}: id must be a non-empty string")
    parsed = parse_row(
        Row.from_image(row["id"], item),
        target.admin.templates,
        default_from_email="default@example.invalid",
    )
    if isinstance(parsed, RowProblems):
        raise CommandError(f"{label} ({row['id']}) would fail: " + "; ".join(parsed.problems))
    return item


def _given(**attributes: Any) -> dict[str, Any]:
    """The attributes the options gave."""
    return {name: value for name, value in attributes.items() if value is not None}


def _attach(ctx: typer.Context, row: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    """Upload ``files`` to the stack's attachments bucket and name them in ``row``."""
    for path in files:
        if not path.is_file():
            raise CommandError(f"--attach: no such file: {path}")
    attachments = target_of(ctx).attachments
    if attachments is None or not attachments.bucket:
        raise CommandError("this stack has no attachments bucket")
    named = []
    for path in files:
        key = f"{row['id']}/{path.name}"
        attachments.upload(path, key)
        named.append({"key": key, "filename": path.name})
    return {**row, "attachments": named}
