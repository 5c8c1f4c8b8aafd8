"""A send row's request attributes as an HTML form, and back, checked by the dispatcher's
own parser so that the form shows exactly the problems ``last_error`` would.

Single strings are text fields (empty: the attribute is left out), ``cc``/``bcc`` one address
per line, ``insert_code`` and ``attachments`` JSON. ``revision`` is not a field: it is kept as
it was (re-fire bumps it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from dispatcher.model.row import (
    ADDRESS_LIST_ATTRIBUTES,
    REQUEST_ATTRIBUTES,
    STRING_ATTRIBUTES,
    STRUCTURED_ATTRIBUTES,
    AttributeValue,
    Image,
    Row,
    plain,
)
from dispatcher.templates.library import TemplateLibrary
from dispatcher.templates.rows import RowProblems, parse_row

__all__ = [
    "JSON_FIELDS",
    "LIST_FIELDS",
    "TEXT_FIELDS",
    "EditResult",
    "form_values",
    "read_form",
    "row_version",
    "split_problems",
]

#: The form's fields, in the order it shows them: a text field per string attribute, one
#: address per line for the lists, JSON for the structured ones.
TEXT_FIELDS = STRING_ATTRIBUTES
LIST_FIELDS = ADDRESS_LIST_ATTRIBUTES
JSON_FIELDS = STRUCTURED_ATTRIBUTES
#: A problem naming one of these belongs to that form field.
_FIELD_OF = {"text/html": "text"}


@dataclass
class EditResult:
    """What a submitted form makes: the new request attributes, or the problems per field."""

    request: dict[str, AttributeValue]
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def form_values(image: Image) -> dict[str, str]:
    """The form's fields filled from a row (any value shows, however malformed)."""
    values = plain(image)
    shown: dict[str, str] = {}
    for name in TEXT_FIELDS:
        value = values.get(name)
        shown[name] = (
            "" if value is None else value if isinstance(value, str) else json.dumps(value)
        )
    for name in LIST_FIELDS:
        value = values.get(name)
        if isinstance(value, list):
            shown[name] = "\n".join(str(v) for v in value)
        else:
            shown[name] = "" if value is None else json.dumps(value, default=str)
    for name in JSON_FIELDS:
        value = values.get(name)
        shown[name] = "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)
    return shown


def read_form(
    form: Mapping[str, str],
    loaded: Row,
    *,
    default_from_email: str,
    templates: TemplateLibrary | None = None,
) -> tuple[EditResult, dict[str, str]]:
    """The submitted form as request attributes, checked as the dispatcher will read the row
    after saving (rendered with ``templates`` if it names one); also the values to show again
    if it has problems."""
    shown = {name: str(form.get(name, "")) for name in (*TEXT_FIELDS, *LIST_FIELDS, *JSON_FIELDS)}
    request: dict[str, AttributeValue] = {}
    problems: dict[str, list[str]] = {}
    for name in TEXT_FIELDS:
        # Bodies as a browser's textarea sends them (CRLF) back to LF; one-line fields at
        # their ends only: a line break inside stays, for the parser to refuse (header
        # injection) rather than for the form to hide.
        value = (
            shown[name].replace("\r\n", "\n") if name in ("text", "html") else shown[name].strip()
        )
        if value:
            request[name] = {"S": value}
    for name in LIST_FIELDS:
        addresses = [line.strip() for line in shown[name].splitlines() if line.strip()]
        if addresses:
            request[name] = {"L": [{"S": a} for a in addresses]}
    serializer = TypeSerializer()
    for name in JSON_FIELDS:
        raw = shown[name].strip()
        if not raw:
            continue
        try:
            request[name] = dict(serializer.serialize(json.loads(raw, parse_float=Decimal)))
        except (ValueError, TypeError) as exc:
            problems.setdefault(name, []).append(f"is not JSON: {exc}")
    if "revision" in loaded.image:
        request["revision"] = loaded.image["revision"]
    if not problems:
        edited = Row.from_image(loaded.id, {**_bookkeeping(loaded.image), **request})
        parsed = parse_row(edited, templates, default_from_email=default_from_email)
        if isinstance(parsed, RowProblems):
            for attribute, problem in split_problems("; ".join(parsed.problems)):
                name = _FIELD_OF.get(attribute or "", attribute or "")
                problems.setdefault(name, []).append(problem)
    return EditResult(request, problems), shown


def split_problems(last_error: str) -> list[tuple[str | None, str]]:
    """``last_error`` as ``(attribute, problem)`` pairs: the parser's problems each begin with
    the attribute they name; a provider's or a transport's reason names none."""
    known = {*REQUEST_ATTRIBUTES, "text/html"}
    pairs: list[tuple[str | None, str]] = []
    for part in filter(None, (p.strip() for p in last_error.split("; "))):
        name, sep, problem = part.partition(": ")
        if sep and name in known:
            pairs.append((name, problem))
        else:
            pairs.append((None, part))
    return pairs


def row_version(image: Image) -> str:
    """A fingerprint of every attribute of a row, request and bookkeeping: a form carries
    the one it was loaded from, and a save or a re-fire goes ahead only if it still holds."""
    canonical = json.dumps(plain(image), sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _bookkeeping(image: Image) -> dict[str, Any]:
    return {name: value for name, value in image.items() if name not in REQUEST_ATTRIBUTES}
