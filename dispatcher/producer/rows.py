"""A producer's API: check a row with the dispatcher's own parser, then insert it.

For Python applications that write rows::

    from dispatcher.producer import insert_row

    result = insert_row("mail-send", {"id": "order-7", "to": "hanako@example.com",
                                      "subject": "Your order", "text": "Thank you."})
    if result.problems:
        ...  # each names its attribute, in the words the row's last_error would use

The row is a plain dict (as boto3's resource API takes it). It is checked exactly as the
dispatcher will read it (:func:`~dispatcher.model.message.parse_message`), so a row this accepts is
not stamped ``invalid`` later, except for what needs the stack (an attachment missing from
the bucket). It is inserted with ``attribute_not_exists(id)``: an id already queued is a
problem, never an overwrite of a row on its way out. Applications in other languages use
``schema/send-row.schema.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from dispatcher.model.message import parse_message
from dispatcher.model.row import REQUEST_ATTRIBUTES, Row
from dispatcher.model.template_row import TemplateRequest, template_request
from dispatcher.templates.library import TemplateLibrary, TemplateSet
from dispatcher.templates.rows import RowProblems, parse_row
from dispatcher.templates.version import TemplateVersion

__all__ = ["Produced", "check_row", "insert_row"]


@dataclass(frozen=True)
class Produced:
    """The id of the row inserted, or why it was not (``problems``)."""

    id: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _image(row: Mapping[str, Any]) -> dict[str, Any]:
    serializer = TypeSerializer()
    return {name: serializer.serialize(value) for name, value in row.items()}


def check_row(
    row: Mapping[str, Any],
    *,
    default_from_email: str = "noreply@example.com",
    now: datetime | None = None,
    templates: TemplateLibrary | Iterable[TemplateVersion] | None = None,
) -> list[str]:
    """The problems the dispatcher would stamp on ``row`` (none: it would send it).

    A row that names a template is rendered against ``templates`` (the stack's
    :class:`~dispatcher.templates.library.TemplateLibrary`, or versions a test gives), so a
    missing variable shows before the insert; without them its own attributes are checked
    and the parts left to the dispatcher."""
    row_id = row.get("id")
    if not isinstance(row_id, str) or not row_id:
        return ["id: missing: every row needs a string id"]
    unknown = sorted(set(row) - REQUEST_ATTRIBUTES - {"id"})
    problems = [f"{name}: not a request attribute (a typo?)" for name in unknown]
    try:
        image = _image(row)
    except TypeError as exc:
        return [*problems, f"row: a value DynamoDB cannot hold ({exc})"]
    parsed_row = Row.from_image(row_id, image)
    if templates is None and isinstance(template_request(parsed_row), TemplateRequest):
        # the parts are the template's, checked when it is given: here, the rest of the row
        unchecked = {"subject": "(the template's)", "text": "(the template's)"}
        placeholder = ("unchecked", unchecked)
        parsed: Any = parse_message(
            parsed_row, default_from_email=default_from_email, now=now, rendered=placeholder
        )
        return problems + (parsed if isinstance(parsed, list) else [])
    library = (
        templates
        if templates is None or isinstance(templates, TemplateLibrary)
        else TemplateSet(templates)
    )
    parsed = parse_row(parsed_row, library, default_from_email=default_from_email, now=now)
    return problems + (parsed.problems if isinstance(parsed, RowProblems) else [])


def insert_row(
    table: str,
    row: Mapping[str, Any],
    *,
    client: Any = None,
    default_from_email: str = "noreply@example.com",
) -> Produced:
    """Check ``row``, then put it into the send table ``table`` unless its id is queued."""
    problems = check_row(row, default_from_email=default_from_email)
    if problems:
        return Produced(None, problems)
    if client is None:
        import boto3

        client = boto3.client("dynamodb")
    try:
        client.put_item(
            TableName=table,
            Item=_image(row),
            ConditionExpression="attribute_not_exists(id)",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return Produced(None, [f"id: a row {row['id']!r} is already in the send table"])
        raise
    return Produced(str(row["id"]))
