"""``dispatcher suppressed``: the suppression list, by scope (``all``, or a category)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dispatcher.ops.cli.common import (
    CommandError,
    JsonOption,
    address_argument,
    app,
    errors_as_exit,
    moment,
    out,
    suppressions_of,
    target_of,
)

__all__ = ["suppressed_app"]

suppressed_app = typer.Typer(
    help="The suppression list: addresses no mail goes to, for all mail (hard bounces, "
    "complaints, blastengine's stop list) or for one category (an unsubscribe). Without a "
    "subcommand: list them.",
    invoke_without_command=True,
)
app.add_typer(suppressed_app, name="suppressed")

CategoryOption = Annotated[
    str | None,
    typer.Option(help="A category (newsletter...): the entry holds back that category only."),
]


@suppressed_app.callback()
def suppressed_list(
    ctx: typer.Context,
    category: CategoryOption = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only entries added since: 2h, 7d, or an ISO-8601 time."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the suppressed addresses, each with its scope and why."""
    if ctx.invoked_subcommand is not None:
        return
    from dispatcher.ops.suppressions import filtered

    with errors_as_exit():
        scope = _scope(category) if category else None
        cutoff = moment(since, "--since") if since else None
        entries = sorted(
            filtered(suppressions_of(ctx).all(), scope=scope, since=cutoff),
            key=lambda e: (e.address, e.scope),
        )
    if as_json:
        typer.echo(json.dumps({"suppressed": [asdict(e) for e in entries]}))
        return
    table = Table("address", "scope", "why", "delivery")
    for entry in entries:
        table.add_row(entry.address, entry.scope, entry.describe(), entry.delivery_id or "")
    out.print(table)
    if not entries:
        out.print("no address is suppressed")


@suppressed_app.command("add")
def suppressed_add(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The address to send no more mail to.")],
    category: CategoryOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", "--note", help="Why (kept with the entry).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Suppress an address by hand, for all mail or one category: rows to it fail
    `suppressed` until it is removed."""
    from dispatcher.recipients.suppression import Suppression
    from dispatcher.support.clock import iso_utc

    with errors_as_exit():
        entry = Suppression(
            address=address_argument(address, "ADDRESS"),
            reason="OPERATOR",
            added_at=iso_utc(datetime.now(UTC)),
            message=reason,
            scope=_scope(category),
            added_by="cli",
        )
        suppressions_of(ctx).add(entry)
    shown = f" for {entry.scope} mail" if category else ""
    typer.echo(
        json.dumps({"added": asdict(entry)}) if as_json else f"suppressed {entry.address}{shown}"
    )


@suppressed_app.command("remove")
def suppressed_remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The address to send mail to again.")],
    category: CategoryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift an address's suppression, for all mail or one category (edit or re-fire its
    failed rows to send them)."""
    from dispatcher.support.clock import iso_utc

    with errors_as_exit():
        scope = _scope(category)
        now = iso_utc(datetime.now(UTC))
        if not suppressions_of(ctx).remove(address, now=now, scope=scope, by="cli"):
            what = f" for {scope} mail" if category else ""
            raise CommandError(f"{address!r} is not suppressed{what}")
    typer.echo(
        json.dumps({"removed": address, "scope": scope})
        if as_json
        else f"no longer suppressed: {address}"
    )


@suppressed_app.command("export")
def suppressed_export(
    ctx: typer.Context,
    output_format: Annotated[str, typer.Option("--format", help="csv")] = "csv",
) -> None:
    """Print the whole list as CSV (address, scope, reason, added_at, added_by, message)."""
    from dispatcher.ops.suppressions import export_csv

    with errors_as_exit():
        if output_format != "csv":
            raise CommandError(f"--format must be csv, not {output_format!r}")
        entries = sorted(suppressions_of(ctx).all(), key=lambda e: (e.address, e.scope))
    typer.echo(export_csv(entries), nl=False)


@suppressed_app.command("import")
def suppressed_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header (address[,scope,reason,...]), or one address per line."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Add a list brought from elsewhere. Every line is checked first: a bad line names
    itself and nothing is written."""
    from dispatcher.ops.suppressions import ImportRefusedError, add_all, parse_import

    with errors_as_exit():
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            entries = parse_import(text)
        except ImportRefusedError as exc:
            raise CommandError(f"{file} not imported: {exc}") from None
        added = add_all(suppressions_of(ctx), entries)
    typer.echo(json.dumps({"imported": added}) if as_json else f"imported {added} entries")


def _scope(category: str | None) -> str:
    from dispatcher.ops.suppressions import scope_of

    try:
        return scope_of(category)
    except ValueError as exc:
        raise CommandError(f"--category: {exc}") from None


@app.command()
def resume(
    ctx: typer.Context,
    category: Annotated[str, typer.Option("--category", help="The paused category.")],
    as_json: JsonOption = False,
) -> None:
    """Resume a category the reputation guard paused: its shares are judged from now on,
    and its paused rows are re-fired in the order they were held back."""
    from dispatcher.ops.reputation import NotPausedError
    from dispatcher.ops.reputation import resume as resume_category

    with errors_as_exit():
        try:
            done = resume_category(target_of(ctx).admin, _scope(category), by="cli")
        except NotPausedError as exc:
            raise CommandError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(asdict(done)))
        return
    out.print(
        f"resumed {done.category} mail: {len(done.refired)} paused row(s) re-fired", markup=False
    )
    if done.changed:
        out.print(f"  changed meanwhile, left alone: {', '.join(done.changed)}", markup=False)
