"""The send-table row as a JSON Schema, built from the parser's own limits so they cannot drift.

``python -m dispatcher.producer.schema`` writes ``schema/send-row.schema.json``; a test keeps the
file equal to what this module builds, and checks the schema against the parser
(:func:`~dispatcher.model.message.parse_message`) on the row corpus. Two shapes are described: the
plain JSON a producer builds (``boto3``'s resource API, a TypeScript object) and the DynamoDB
JSON it becomes on the wire (``{"S": ...}``). What JSON Schema cannot say is listed in
:data:`NOT_EXPRESSED`: the parser alone checks it, and a row failing it ends ``invalid``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dispatcher.model.blastengine_limits import (
    ADDRESS_CHARS,
    ATTACHMENT_FILES,
    INSERT_CODES,
    LIST_ADDRESSES,
    NAME_CHARS,
    SUBJECT_CHARS,
    UNSUBSCRIBE_CHARS,
)
from dispatcher.model.message import Encode
from dispatcher.model.row import PROVIDERS
from dispatcher.model.template_row import LANGUAGE, NAME, NOT_WITH_TEMPLATE

__all__ = ["NOT_EXPRESSED", "SCHEMA_PATH", "build_schema"]

SCHEMA_PATH = Path("schema") / "send-row.schema.json"

#: The parser's rules JSON Schema cannot state (each is checked when the row is read).
NOT_EXPRESSED = (
    "text and html sizes are bytes in the row's encoding (30,000 and 70,000), not characters",
    "a row in ISO-2022-JP must hold only characters that encoding has",
    "an address must be deliverable-shaped as email-validator reads it (the schema's pattern "
    "is looser)",
    "send_after at most 366 days ahead of when the row is read, and not after expires_at",
    "a time must be a real date that stays within the year 9999 once converted to UTC",
    "an attachment must exist in the bucket and fit ATTACHMENTS_MAX_BYTES with the others",
    "a subject that is only blank space, or a body that is empty",
    "strings must be valid UTF-8 (no lone surrogates)",
    "an attachment's filename may not end in an extension blastengine refuses (.exe, .zip, "
    "...: BLASTENGINE.md's list; ECMAScript patterns have no case-insensitive flag)",
    "vars nests at most 5 deep and holds no binary value",
    "a template row's parts must render within the same limits, when the dispatcher renders it",
)
_NOT_WITH_TEMPLATE = NOT_WITH_TEMPLATE

# Characters no header may carry: C0 controls but TAB, DEL, C1 controls, line and paragraph
# separators, and the bidirectional controls (message.py's _HEADER_CONTROLS, _BIDI_CONTROLS).
_CONTROLS = (
    "\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
)
_HEADER_SAFE = f"^[^{_CONTROLS}]*$"
#: What ends a URI in List-Unsubscribe or starts another (the parser's _URI_BREAKS), and
#: the rest of one URI.
_URI_BREAKS = f"<>,\\s\"'{_CONTROLS}"
_URI_REST = f"[^{_URI_BREAKS}]*$"
_ATOM = f"[^@\\s<>,;{_CONTROLS}]+"
_ADDRESS = f"^{_ATOM}@{_ATOM}\\.{_ATOM}$"
_TIMESTAMP = "^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?(Z|[+-]\\d{2}:?\\d{2})$"


def _address(description: str) -> dict[str, Any]:
    low, high = ADDRESS_CHARS
    return {
        "type": "string",
        "description": description,
        "minLength": low,
        "maxLength": high,
        "pattern": _ADDRESS,
    }


def _plain() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A row as a producer builds it (plain JSON).",
        "required": ["id", "to"],
        "anyOf": [
            {
                "description": "A mail of its own: a subject, and a text or html body.",
                "required": ["subject"],
                "anyOf": [{"required": ["text"]}, {"required": ["html"]}],
                "not": {"required": ["template"]},
            },
            {
                "description": "A mail from a template: its parts come from it.",
                "required": ["template"],
                "not": {"anyOf": [{"required": [name]} for name in _NOT_WITH_TEMPLATE]},
            },
        ],
        "dependentRequired": {
            "reply_to_name": ["reply_to"],
            "vars": ["template"],
            "language": ["template"],
        },
        "properties": {**_mail_properties(), **_delivery_properties(), **_template_properties()},
    }


def _mail_properties() -> dict[str, Any]:
    """The attributes that make up the mail: its people, subject and bodies."""
    name = {"type": "string", "maxLength": NAME_CHARS, "pattern": _HEADER_SAFE}
    return {
        "id": {"type": "string", "minLength": 1, "description": "Yours to choose."},
        "to": _address("One recipient."),
        "subject": {
            "type": "string",
            "minLength": 1,
            "maxLength": SUBJECT_CHARS[1],
            "pattern": _HEADER_SAFE,
        },
        "text": {"type": "string", "description": "At most 30,000 bytes as sent."},
        "html": {"type": "string", "description": "At most 70,000 bytes as sent."},
        "from": _address("Default: DEFAULT_FROM_EMAIL."),
        "from_name": name,
        "reply_to": _address("The Reply-To address."),
        "reply_to_name": name,
        "cc": {
            "type": "array",
            "maxItems": LIST_ADDRESSES,
            "items": _address("A cc recipient."),
        },
        "bcc": {
            "type": "array",
            "maxItems": LIST_ADDRESSES,
            "items": _address("A bcc recipient."),
        },
    }


def _delivery_properties() -> dict[str, Any]:
    """The attributes that say how and when it is sent: headers, encoding, provider,
    variables, attachments, times."""
    filename = {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": f"^[^/\\\\{_CONTROLS}]+$",
    }
    return {
        "list_unsubscribe_url": {
            "type": "string",
            "maxLength": UNSUBSCRIBE_CHARS,
            "pattern": f"^[Hh][Tt][Tt][Pp][Ss]://[^/{_URI_BREAKS}]{_URI_REST}",
            "description": "One https URI (List-Unsubscribe).",
        },
        "list_unsubscribe_mailto": {
            "type": "string",
            "maxLength": UNSUBSCRIBE_CHARS,
            "pattern": f"^[Mm][Aa][Ii][Ll][Tt][Oo]:[^{_URI_BREAKS}]*@{_URI_REST}",
        },
        "encode": {"enum": [e.value for e in Encode]},
        "provider": {"enum": list(PROVIDERS)},
        "insert_code": {
            "type": "object",
            "maxProperties": INSERT_CODES,
            "propertyNames": {"pattern": "^[A-Za-z0-9]+$"},
            "additionalProperties": {"type": "string"},
            "description": '{"name": "Hanako"} fills __name__ in the subject and bodies.',
        },
        "insert_code_unescaped": {
            "type": "array",
            "maxItems": INSERT_CODES,
            "items": {"type": "string", "pattern": "^[A-Za-z0-9]+$"},
            "description": "Keys of insert_code whose values go into html unescaped, as markup: "
            "only for values the application wrote itself, never a customer's.",
        },
        "attachments": {
            "type": "array",
            "maxItems": ATTACHMENT_FILES,
            "items": {
                "type": "object",
                "required": ["key"],
                "properties": {
                    "key": {"type": "string", "minLength": 1, "pattern": "\\S"},
                    "filename": filename,
                },
                "additionalProperties": False,
            },
        },
        "send_after": {"type": "string", "pattern": _TIMESTAMP},
        "expires_at": {"type": "string", "pattern": _TIMESTAMP},
        "revision": {"type": "integer"},
        "resent_from": {
            "type": "string",
            "maxLength": 600,
            "description": "The mail this row copies (dispatcher resend writes it).",
        },
    }


def _template_properties() -> dict[str, Any]:
    """The attributes of a row that names a template."""
    return {
        "template": {
            "type": "string",
            "pattern": f"^{NAME.pattern}(@[1-9][0-9]*)?$",
            "description": "A template's name, or name@version to pin one.",
        },
        "language": {
            "type": "string",
            "pattern": f"^{LANGUAGE.pattern}$",
            "description": "The template's language variant (default: its default language).",
        },
        "vars": {
            "type": "object",
            "description": "The values the template renders (strings, numbers, lists, maps).",
        },
    }


def _as_dynamodb(schema: dict[str, Any]) -> dict[str, Any]:
    """The same rules on DynamoDB's attribute values (``S``, ``N``, ``L``, ``M``)."""

    def wrap(kind: str, inner: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [kind],
            "properties": {kind: inner},
            "additionalProperties": False,
        }

    if "enum" in schema or schema.get("type") == "string":
        return wrap("S", schema)
    if schema.get("type") == "integer":
        return wrap("N", {"type": "string", "pattern": "^-?\\d+$"})
    if schema.get("type") == "array":
        return wrap("L", {**schema, "items": _as_dynamodb(schema["items"])})
    if schema.get("type") == "object":
        inner = dict(schema)
        if "properties" in inner:
            inner["properties"] = {k: _as_dynamodb(v) for k, v in inner["properties"].items()}
        if isinstance(inner.get("additionalProperties"), dict):
            inner["additionalProperties"] = _as_dynamodb(inner["additionalProperties"])
        return wrap("M", inner)
    raise ValueError(f"no DynamoDB form for {schema}")


def build_schema() -> dict[str, Any]:
    plain = _plain()
    item = dict(plain)
    item["description"] = "A row as DynamoDB holds it (DynamoDB JSON, as PutItem takes it)."
    item["properties"] = {k: _as_dynamodb(v) for k, v in plain["properties"].items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/mail-dispatcher/schema/send-row.schema.json",
        "title": "A send-table row",
        "description": "The request attributes an application writes; the dispatcher adds the "
        "rest. Not expressed here (the parser checks them): " + "; ".join(NOT_EXPRESSED) + ".",
        "oneOf": [{"$ref": "#/$defs/plain"}, {"$ref": "#/$defs/dynamodb"}],
        "$defs": {"plain": plain, "dynamodb": item},
    }


def render() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")
