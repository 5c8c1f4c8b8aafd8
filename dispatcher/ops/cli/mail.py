"""What became of mail: ``history``, the suppression list, ``bounces``, ``reconcile``,
``webhook-url``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from dispatcher.model.row import plain
from dispatcher.ops.cli.common import (
    CommandError,
    JsonOption,
    LiveOption,
    address_argument,
    app,
    clip,
    deliveries_of,
    delivery_line,
    duration,
    err,
    errors_as_exit,
    moment,
    out,
    take,
    target_of,
)


@app.command()
def history(
    ctx: typer.Context,
    row_id: Annotated[str | None, typer.Option("--id", help="One row's history.")] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Every mail to this address (as its `to`), newest first: one Query."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only mail sent since: a duration back from now (2h, 7d) or an ISO time."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Items to show at most.", min=1)] = 50,
    live: LiveOption = False,
    as_json: JsonOption = False,
) -> None:
    """What was sent: the history table."""
    with errors_as_exit():
        since_utc = moment(since, "--since") if since else None
        if row_id is not None and to is not None:
            raise CommandError("--id and --to are two searches: choose one")
        address = address_argument(to, "--to") if to is not None else None
        admin = target_of(ctx).admin
        if row_id is not None:
            items_iter: Iterator[dict[str, Any]] = iter(admin.history(row_id, since=since_utc))
        elif address is not None:
            items_iter = admin.history_to(address, since=since_utc)
        else:
            err.print("[dim](a paginated Scan of the history table; --id makes it a Query)[/]")
            items_iter = admin.scan_history(since=since_utc)
        if live and row_id is None:
            raise CommandError("--live goes with --id (one row's deliveries, not the table's)")
        items, more = take(items_iter, limit)
        plain_items = sorted(
            (plain(i) for i in items), key=lambda i: str(i.get("sent_at")), reverse=bool(to)
        )
        deliveries = deliveries_of(ctx, plain_items) if live else {}
    if as_json:
        document: dict[str, Any] = {"history": plain_items, "truncated": more}
        if live:
            document["deliveries"] = deliveries
        typer.echo(json.dumps(document, default=str))
        return
    table = Table(
        "sent at", "id", "to", "subject", "provider", "delivery", "status", "attempts", "bounce"
    )
    for item in plain_items:
        table.add_row(
            str(item.get("sent_at")),
            str(item.get("id")),
            str(item.get("to")),
            clip(str(item.get("subject", "")), 40),
            str(item.get("provider", "")),
            str(item.get("delivery_id", ""))
            + (" (confirmed by look-up)" if item.get("confirmed_by") == "lookup" else "")
            + (
                f" ({delivery_line(deliveries[str(item.get('delivery_id'))])})"
                if str(item.get("delivery_id")) in deliveries
                else ""
            ),
            str(item.get("delivery_status", "")),
            str(item.get("attempts", "")),
            f"{item['bounce_type']} {item.get('bounce_address', '')}"
            if item.get("bounce_type")
            else "",
        )
    out.print(table)
    if more:
        out.print(f"(first {limit} items; use --limit for more)")


@app.command()
def resend(
    ctx: typer.Context,
    row_id: Annotated[str, typer.Argument(metavar="ID", help="The id the mail was sent under.")],
    sent_at: Annotated[
        str | None,
        typer.Option(
            help="Which send of that id (its history item's sent_at); default: the latest."
        ),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Send it to this address instead.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Send a mail again as it was sent: a new row (a new id, resent_from naming the
    original) copying the mail as sent, through everything a new row goes through
    (suppression, allowlist, limits). Needs the mail as sent, kept HISTORY_BODY_DAYS."""
    from dispatcher.ops.admin import RowExistsError
    from dispatcher.ops.resend import ResendError
    from dispatcher.ops.resend import resend as resend_mail

    with errors_as_exit():
        address = address_argument(to, "--to") if to is not None else None
        try:
            done = resend_mail(target_of(ctx).admin, row_id, sent_at=sent_at, to=address)
        except (ResendError, RowExistsError) as exc:
            raise CommandError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"inserted": done.inserted, "resent_from": done.resent_from}))
    else:
        out.print(f"inserted {done.inserted}, a copy of {done.resent_from}", markup=False)


@app.command()
def erase(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The address to erase.")],
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase one person: the address leaves the history items (their counts and times stay),
    its waiting rows are deleted, and bounce events lose it. Its suppression entry stays, so
    it is not mailed again (docs/how-to/erase-a-person.md)."""
    from dispatcher.ops.erasure import erase as erase_address

    with errors_as_exit():
        address = address_argument(to, "--to")
        target = target_of(ctx)
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("erase removes data for good: add --yes to run it unasked")
            typer.confirm(f"erase {address} from this stack's history and send table?", abort=True)
        done = erase_address(target.admin, address, bounce_table=target.bounce_table)
    if as_json:
        typer.echo(json.dumps(asdict(done)))
        return
    out.print(f"erased {address}:", markup=False)
    out.print(f"  history items: {len(done.history_items)}", markup=False)
    out.print(f"  kept mails as sent, deleted: {done.bodies}", markup=False)
    out.print(f"  waiting rows deleted: {len(done.rows_deleted)}", markup=False)
    if done.rows_left:
        out.print(f"  rows that changed meanwhile (run again): {', '.join(done.rows_left)}")
    out.print(f"  bounce events: {done.bounce_events}", markup=False)
    if done.suppressed:
        out.print("  the suppression entry stays: it keeps the address from being mailed again")


@app.command()
def bounces(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only bounces received this long ago or later: 30m, 2h, 7d.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--type", help="HARDERROR, SOFTERROR, DROP or COMPLAINT.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Bounces to show at most.", min=1)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Recent bounces and complaints the providers reported, joined to their history item
    or still orphans (their delivery has no history item yet)."""
    from dispatcher.bounces.event import BounceType
    from dispatcher.support.clock import iso_utc

    with errors_as_exit():
        try:
            wanted = BounceType(kind) if kind is not None else None
        except ValueError:
            raise CommandError("--type must be HARDERROR, SOFTERROR, DROP or COMPLAINT") from None
        cutoff = iso_utc(datetime.now(UTC) - duration(since, "--since")) if since else None
        err.print("[dim](a paginated Scan of the bounce table)[/]")
        items, more = take(target_of(ctx).ledger().recent(since=cutoff, kind=wanted), limit)
    rows = sorted((plain(i) for i in items), key=lambda i: str(i.get("received_at")))
    if as_json:
        typer.echo(json.dumps({"bounces": rows, "truncated": more}, default=str))
        return
    table = Table("received", "type", "address", "delivery", "code", "history row")
    for bounce in rows:
        table.add_row(
            str(bounce.get("received_at", ""))[:19],
            str(bounce.get("type")),
            str(bounce.get("address")),
            str(bounce.get("delivery_id")),
            str(bounce.get("code", "")),
            str(bounce.get("joined_to", "(orphan)")),
        )
    out.print(table)
    if more:
        out.print(f"(first {limit}; use --limit for more)")


@app.command()
def reconcile(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="How far back to read blastengine's delivery logs: 30m, 2h, 1d.")
    ] = "2h",
    as_json: JsonOption = False,
) -> None:
    """Catch up bounces whose webhook never came, from blastengine's delivery logs, through
    the webhook's own idempotent path; then join orphan bounces to their history."""
    from dispatcher.bounces.catch_up import Reconciler

    with errors_as_exit():
        until = datetime.now(UTC)
        target = target_of(ctx)
        reconciler = Reconciler(provider=target.provider(), ledger=target.ledger())
        result = reconciler.catch_up(until - duration(since, "--since"), until)
    if as_json:
        typer.echo(json.dumps(asdict(result)))
        return
    out.print(
        f"{result.results} bounce result(s) read, {result.applied} new to the history, "
        f"{result.joined_orphans} orphan(s) joined"
        + (" (stopped at the page limit: run it again)" if result.truncated else "")
    )


@app.command("webhook-url")
def webhook_url(ctx: typer.Context) -> None:
    """The bounce webhook's full URL, secret included, to paste into blastengine's console."""
    with errors_as_exit():
        target = target_of(ctx)
        url = target.webhook_url
        if not url:
            raise CommandError("this stack has no bounce webhook")
        if url.endswith("/hooks/"):  # a deployed stack's output stops before the secret
            url += _webhook_secret()
    typer.echo(url)


def _webhook_secret() -> str:
    """The deployed webhook's secret, from SSM with your own AWS credentials."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    name = os.environ.get("WEBHOOK_SECRET_PARAMETER") or "/mail-dispatcher/webhook-secret"
    try:
        response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        raise CommandError(f"cannot read the webhook secret {name!r}: {exc}") from None
    return str(response["Parameter"]["Value"])
