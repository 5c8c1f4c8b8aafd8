"""A row read with its template: the version it names, rendered with its ``vars``, then parsed
like any row, so the rendered mail meets every check a row's own fields meet.

What goes wrong with the template (no such template or version, a missing variable, an
error on a line, a render past its limits, or a rendered part the parser refuses) is the
row's ``template`` problem, each reason naming the template and its version; what is wrong
with the row's own attributes stays ``invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.model.message import Message, parse_message
from dispatcher.model.row import ErrorKind, Row
from dispatcher.model.template_row import TEMPLATE_DEFAULTS, TemplateRequest, template_request
from dispatcher.templates.library import TemplateLibrary, TemplateSet, UnknownTemplateError

if TYPE_CHECKING:
    from dispatcher.templates.render import Rendered

__all__ = ["RowProblems", "parse_row", "rendered_parts"]

#: A problem's attribute that the template gave (``text/html`` is the parser's name for both).
_PARTS = frozenset({"text", "html", "text/html"})


@dataclass(frozen=True)
class RowProblems:
    """Why a row cannot be sent, and whose problem it is (``invalid`` or ``template``)."""

    problems: list[str]
    kind: ErrorKind


def parse_row(
    row: Row, templates: TemplateLibrary | TemplateSet | None, **parse_options: Any
) -> Message | RowProblems:
    """``row`` as a message (rendered first if it names a template), or its problems."""
    request = template_request(row)
    if not isinstance(request, TemplateRequest):
        parsed = parse_message(row, **parse_options)
        return parsed if isinstance(parsed, Message) else RowProblems(parsed, ErrorKind.INVALID)
    # The engine is imported by the first row that names a template, not by every cold start.
    from dispatcher.templates.render import TemplateError, render

    if templates is None:
        return RowProblems(
            ["template: this deployment has no templates table (TEMPLATES_TABLE_NAME)"],
            ErrorKind.TEMPLATE,
        )
    try:
        rendered = render(templates.resolve(request.ref, request.language), request.vars)
    except (UnknownTemplateError, TemplateError) as exc:
        return RowProblems([str(exc)], ErrorKind.TEMPLATE)
    parts = rendered_parts(rendered)
    ref = rendered.template.ref
    parsed = parse_message(row, rendered=(ref, parts), **parse_options)
    if isinstance(parsed, Message):
        return parsed
    given = _PARTS | {name for name in TEMPLATE_DEFAULTS if name not in row.image}
    theirs = [p for p in parsed if p.split(":", 1)[0] in given]
    if not theirs:
        return RowProblems(parsed, ErrorKind.INVALID)
    return RowProblems(
        [f"template {ref}: {p}" if p in theirs else p for p in parsed], ErrorKind.TEMPLATE
    )


def rendered_parts(rendered: Rendered) -> dict[str, str | None]:
    """The row attributes a rendered version gives: its parts and its defaults."""
    version = rendered.template
    return {
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "from": version.from_email,
        "from_name": version.from_name,
        "reply_to": version.reply_to,
    }
