"""``dispatcher template``: save, show, list, preview and compare templates."""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dispatcher.ops.cli.common import (
    CommandError,
    JsonOption,
    app,
    errors_as_exit,
    json_object,
    out,
    target_of,
)

__all__ = ["template_app"]

template_app = typer.Typer(
    help="Templates rows name (`template` and `vars` instead of subject/text/html): save a "
    "new version, show, list, preview with sample vars, compare versions."
)
app.add_typer(template_app, name="template")

LanguageOption = Annotated[
    str, typer.Option(help="A language variant (ja, pt-BR); default: the template's default.")
]
VersionOption = Annotated[
    int | None, typer.Option(help="A saved version (default: the current one).", min=1)
]


@template_app.command("put")
def put(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The template's name (a-z, 0-9, '.', '_', '-').")],
    subject: Annotated[str, typer.Option(help="The subject, a template itself.")],
    text: Annotated[Path | None, typer.Option(help="A file with the text part.")] = None,
    html: Annotated[Path | None, typer.Option(help="A file with the HTML part.")] = None,
    language: LanguageOption = "",
    example: Annotated[
        str | None, typer.Option(help="Sample vars, a JSON object (or @FILE): the preview's.")
    ] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Default sender address.")] = None,
    from_name: Annotated[str | None, typer.Option(help="Default sender name.")] = None,
    reply_to: Annotated[str | None, typer.Option(help="Default Reply-To address.")] = None,
    optional: Annotated[
        list[str] | None,
        typer.Option(help="A variable rows may leave out (repeatable); the rest are required."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Save a new version of a template (its language's current one from now on). A
    template that does not compile, or reaches outside its sandbox, is refused with its
    part and line, and nothing is saved."""
    from dispatcher.ops.templates import TemplateRefusedError, save_template
    from dispatcher.templates.version import TemplateVersion

    with errors_as_exit():
        draft = TemplateVersion(
            name=name,
            version=0,
            subject=subject,
            text=_read(text, "--text") if text else None,
            html=_read(html, "--html") if html else None,
            language=language,
            from_email=sender,
            from_name=from_name,
            reply_to=reply_to,
            example=json_object(example, "--example") if example else {},
        )
        library = target_of(ctx).template_library()
        try:
            saved = save_template(library, draft, optional=tuple(optional or ()), by="cli")
        except TemplateRefusedError as exc:
            raise CommandError(f"{name} not saved: " + "; ".join(exc.problems)) from None
    if as_json:
        typer.echo(json.dumps({"saved": _plain(saved)}, default=_number))
        return
    variant = f" ({saved.language})" if saved.language else ""
    out.print(f"saved {saved.ref}{variant}", markup=False)
    out.print(f"  variables: {', '.join(saved.variables) or '(none)'}", markup=False)
    out.print(f"  required:  {', '.join(saved.required) or '(none)'}", markup=False)


@template_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The template's name.")],
    version: VersionOption = None,
    language: LanguageOption = "",
    as_json: JsonOption = False,
) -> None:
    """A template's version: its parts, defaults, variables and example."""
    from dispatcher.ops.templates import find_version

    with errors_as_exit():
        found = find_version(
            target_of(ctx).template_library(), name, version=version, language=language
        )
    if as_json:
        typer.echo(json.dumps(_plain(found), default=_number))
        return
    variant = f" ({found.language})" if found.language else ""
    out.print(f"{found.ref}{variant}, saved {found.saved_at} by {found.saved_by or '?'}")
    for label, value in (
        ("from", found.from_email), ("from name", found.from_name),
        ("reply-to", found.reply_to), ("variables", ", ".join(found.variables)),
        ("required", ", ".join(found.required)),
    ):  # fmt: skip
        if value:
            out.print(f"  {label}: {value}", markup=False, highlight=False)
    for part in ("subject", "text", "html"):
        source = found.source(part)
        if source is not None:
            out.rule(part)
            out.print(source, markup=False, highlight=False)


@template_app.command("ls")
def list_templates(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every template and language variant: its current version, and the rows failing on it
    (`dispatcher retry --all-failed --kind template` re-fires them once it is fixed)."""
    from dispatcher.ops.templates import failing_rows

    with errors_as_exit():
        target = target_of(ctx)
        currents = target.template_library().currents()
        failing = failing_rows(target.admin)
    if as_json:
        typer.echo(
            json.dumps(
                {"templates": [_plain(t) for t in currents], "failing_rows": failing},
                default=_number,
            )
        )
        return
    table = Table("name", "language", "version", "saved", "subject", "failing rows")
    for found in currents:
        rows = failing.get(found.name, [])
        table.add_row(
            found.name, found.language or "(default)", str(found.version), found.saved_at,
            found.subject, str(len(rows)) if rows else "",
        )  # fmt: skip
    out.print(table)
    if not currents:
        out.print("(no templates: `dispatcher template put NAME --subject ...` saves one)")


@template_app.command("preview")
def preview(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The template's name.")],
    variables: Annotated[
        str | None,
        typer.Option("--vars", help="A JSON object (or @FILE); default: the template's example."),
    ] = None,
    version: VersionOption = None,
    language: LanguageOption = "",
    as_json: JsonOption = False,
) -> None:
    """Render a template as a row would be: subject, text and HTML. A missing variable, or
    any other problem, exits 2 naming it."""
    from dispatcher.ops.templates import TemplateRefusedError, find_version
    from dispatcher.ops.templates import preview as render_preview

    with errors_as_exit():
        found = find_version(
            target_of(ctx).template_library(), name, version=version, language=language
        )
        values = json_object(variables, "--vars") if variables else None
        try:
            shown = render_preview(found, values)
        except TemplateRefusedError as exc:
            raise CommandError(str(exc)) from None
    rendered = shown.rendered
    if as_json:
        parts = {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
        typer.echo(json.dumps({"template": found.ref, **parts}))
        return
    out.print(f"{found.ref}: subject: {rendered.subject}", markup=False, highlight=False)
    for part, value in (("text", rendered.text), ("html", rendered.html)):
        if value is not None:
            out.rule(part)
            out.print(value, markup=False, highlight=False)


@template_app.command("diff")
def diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The template's name.")],
    old: Annotated[int, typer.Argument(help="A version.", min=1)],
    new: Annotated[int, typer.Argument(help="Another version.", min=1)],
) -> None:
    """What changed between two versions, part by part (a unified diff)."""
    from dispatcher.ops.templates import find_version, version_diff

    with errors_as_exit():
        library = target_of(ctx).template_library()
        before = find_version(library, name, version=old)
        after = find_version(library, name, version=new)
    typer.echo(version_diff(before, after) or "(no differences)", nl=False)


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"{option}: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{option}: cannot read {path}: {exc}") from None


def _number(value: Any) -> Any:
    """DynamoDB's numbers (an example's) as JSON's."""

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain(version: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(version).items()}
