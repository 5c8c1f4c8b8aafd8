"""schema/send-row.schema.json is what the parser's limits say, and agrees with the parser on
the row corpus, except where a rule cannot be said in JSON Schema (schema.NOT_EXPRESSED)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from jsonschema import Draft202012Validator

from dispatcher.model.row import Row
from dispatcher.producer.schema import SCHEMA_PATH, build_schema, render
from dispatcher.templates.library import TemplateSet
from dispatcher.templates.rows import RowProblems, parse_row
from dispatcher.templates.version import TemplateVersion
from tests.corpus import MALFORMED, _row

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Draft202012Validator(build_schema())
NOW = datetime(2026, 12, 1, tzinfo=UTC)

#: Corpus rows the schema accepts though the parser refuses them, each for a rule listed in
#: NOT_EXPRESSED (the reason says which).
PARSER_ONLY = {
    "body-empty": "a body that is empty",
    "body-too-large": "bytes",
    "body-10mb": "bytes",
    "text-over-30kb": "bytes",
    "text-over-30kb-in-utf8": "bytes",
    "html-over-70kb": "bytes",
    "html-only-no-text-in-it": "a body that is empty (its derived text part)",
    "iso2022jp-unencodable": "ISO-2022-JP",
    "subject-empty": "only blank space",
    "subject-lone-surrogate": "UTF-8",
    "text-invalid-utf8": "UTF-8",
    "send-after-years-ahead": "366 days",
    "send-after-impossible-date": "a real date (the pattern checks shape)",
    "send-after-overflows-utc": "the year 9999",
    "expires-at-overflows-utc": "the year 9999",
    "vars-too-deep": "vars nests at most 5 deep",
}
#: The template the corpus's template rows name, as a stack would hold it.
TEMPLATES = TemplateSet(
    [TemplateVersion("order", 1, subject="Order {{ n }}", text="Thank you, {{ name }}.")]
)

VALID = [
    _row("plain"),
    _row("html-only", text=None, html={"S": "<p>Hi</p>"}),
    _row(
        "everything",
        **{
            "from": {"S": "shop@example.com"},
            "from_name": {"S": "Shop"},
            "reply_to": {"S": "help@example.com"},
            "reply_to_name": {"S": "Help"},
            "cc": {"L": [{"S": "c@example.com"}]},
            "bcc": {"L": [{"S": "b@example.com"}]},
            "list_unsubscribe_url": {"S": "https://example.com/u"},
            "list_unsubscribe_mailto": {"S": "mailto:u@example.com"},
            "encode": {"S": "ISO-2022-JP"},
            "provider": {"S": "ses"},
            "insert_code": {"M": {"name": {"S": "Hanako"}}},
            "attachments": {"L": [{"M": {"key": {"S": "o/7/invoice.pdf"}}}]},
            "send_after": {"S": "2026-12-02T09:00:00+09:00"},
            "expires_at": {"S": "2026-12-03T09:00:00+09:00"},
            "revision": {"N": "2"},
        },
    ),
    _row("template", subject=None, text=None, template={"S": "order"}, vars={"M": {
        "n": {"N": "7"}, "name": {"S": "Hanako"}}}),
    _row("template-pinned-own-subject", text=None, template={"S": "order@1"},
         language={"S": "ja"}, vars={"M": {"n": {"N": "7"}, "name": {"S": "Hanako"}}}),
]  # fmt: skip


def _plain(image: dict[str, Any]) -> dict[str, Any]:
    """The row as a producer writes it with boto3's resource API (plain JSON)."""
    out = {k: TypeDeserializer().deserialize(v) for k, v in image.items()}
    return {k: int(v) if k == "revision" else v for k, v in out.items()}


def _parses(image: dict[str, Any]) -> bool:
    parsed = parse_row(
        Row.from_image(image["id"]["S"], image),
        TEMPLATES,
        default_from_email="noreply@example.com",
        now=NOW,
    )
    return not isinstance(parsed, RowProblems)


def test_the_checked_in_schema_is_what_the_parsers_limits_build() -> None:
    assert (ROOT / SCHEMA_PATH).read_text() == render(), (
        "regenerate it: python -m dispatcher.producer.schema"
    )
    Draft202012Validator.check_schema(build_schema())


@pytest.mark.parametrize("image", VALID, ids=lambda i: i["id"]["S"])
def test_a_row_the_parser_accepts_the_schema_accepts_in_both_shapes(image: dict) -> None:
    assert _parses(image)
    assert list(VALIDATOR.iter_errors(image)) == []
    assert list(VALIDATOR.iter_errors(_plain(image))) == []


@pytest.mark.parametrize(
    ("case", "overrides", "attribute"), MALFORMED, ids=[c[0] for c in MALFORMED]
)
def test_a_row_the_parser_refuses_the_schema_refuses_unless_listed(
    case: str, overrides: dict, attribute: str
) -> None:
    image = _row(f"corpus-{case}", **overrides)
    assert not _parses(image)
    accepted = VALIDATOR.is_valid(image)
    if case in PARSER_ONLY:
        assert accepted, f"{case} is listed as parser-only but the schema refuses it: unlist it"
    else:
        assert not accepted, f"the schema accepts {case}, which the parser refuses"


def test_every_parser_only_case_names_a_rule_the_schema_lists() -> None:
    listed = build_schema()["description"]
    for reason in PARSER_ONLY.values():
        assert reason.split(" (")[0] in listed, reason


def test_the_typescript_type_is_generated_from_the_schema() -> None:
    """`make schema` writes it with json-schema-to-typescript (from npm: not run in tests);
    this checks it names every attribute the schema has, in both shapes."""
    typescript = (ROOT / "schema" / "send-row.d.ts").read_text()
    assert typescript.startswith("/* Generated by make schema")
    assert "export type ASendTableRow = Plain | Dynamodb;" in typescript
    for name in build_schema()["$defs"]["plain"]["properties"]:
        assert f"  {name}?:" in typescript or f"  {name}:" in typescript, name
