"""Malformed send rows, each with the attribute its reason must name.

Shared by the unit tests (parse_message) and the functional tests (the handler leaves each one
``failed``/``invalid`` with zero API calls).
"""

from __future__ import annotations

import json
from typing import Any

S = lambda v: {"S": v}  # noqa: E731
N = lambda v: {"N": str(v)}  # noqa: E731


def _row(row_id: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": S(row_id),
        "to": S("alice@example.com"),
        "subject": S("Hello"),
        "text": S("Hi there"),
    }
    for name, value in overrides.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def _nested(depth: int) -> dict[str, Any]:
    """A ``vars`` map nesting ``depth`` deep (maps in lists in maps)."""
    value: dict[str, Any] = S("deep")
    for level in range(depth):
        value = {"M": {"a": value}} if level % 2 == 0 else {"L": [value]}
    return value if "M" in value else {"M": {"a": value}}


# (case name, overrides of a valid row, attribute the reason must name)
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("to-missing", {"to": None}, "to"),
    ("to-empty", {"to": S("")}, "to"),
    ("to-number", {"to": N(5)}, "to"),
    ("to-list", {"to": {"L": [S("a@example.com")]}}, "to"),
    ("to-null", {"to": {"NULL": True}}, "to"),
    ("to-no-at", {"to": S("alice.example.com")}, "to"),
    ("to-no-domain", {"to": S("alice@")}, "to"),
    ("to-two-addresses", {"to": S("a@example.com, b@example.com")}, "to"),
    ("to-crlf-injection", {"to": S("a@example.com\r\nBcc: victim@example.com")}, "to"),
    ("to-display-name", {"to": S("Alice <alice@example.com>")}, "to"),
    ("to-spaces", {"to": S("alice @example.com")}, "to"),
    ("subject-missing", {"subject": None}, "subject"),
    ("subject-empty", {"subject": S("   ")}, "subject"),
    ("subject-number", {"subject": N(1)}, "subject"),
    ("subject-crlf", {"subject": S("Hi\r\nBcc: victim@example.com")}, "subject"),
    ("subject-lf", {"subject": S("Hi\nX-Injected: 1")}, "subject"),
    ("subject-too-long", {"subject": S("x" * 2000)}, "subject"),
    ("subject-lone-surrogate", {"subject": S("bad \ud800 utf8")}, "subject"),
    ("body-missing", {"text": None}, "text/html"),
    ("body-empty", {"text": S("")}, "text/html"),
    ("text-number", {"text": N(3)}, "text"),
    ("html-bool", {"html": {"BOOL": True}}, "html"),
    ("body-too-large", {"text": S("x" * 1_100_000)}, "text"),
    ("text-invalid-utf8", {"text": S("\udcff")}, "text"),
    ("from-invalid", {"from": S("not an address")}, "from"),
    ("from-number", {"from": N(1)}, "from"),
    ("from-crlf", {"from": S("a@example.com\r\nBcc: x@example.com")}, "from"),
    ("from-name-crlf", {"from_name": S("Shop\r\nBcc: x@example.com")}, "from_name"),
    ("from-name-map", {"from_name": {"M": {}}}, "from_name"),
    ("reply-to-invalid", {"reply_to": S("nobody")}, "reply_to"),
    ("cc-string", {"cc": S("b@example.com")}, "cc"),
    ("cc-string-set", {"cc": {"SS": ["b@example.com"]}}, "cc"),
    ("cc-bad-member", {"cc": {"L": [S("b@example.com"), S("nope")]}}, "cc"),
    ("cc-number-member", {"cc": {"L": [N(1)]}}, "cc"),
    ("cc-crlf-member", {"cc": {"L": [S("b@example.com\nBcc: c@example.com")]}}, "cc"),
    ("cc-over-limit", {"cc": {"L": [S(f"c{i}@example.com") for i in range(11)]}}, "cc"),
    ("bcc-over-limit", {"bcc": {"L": [S(f"b{i}@example.com") for i in range(11)]}}, "bcc"),
    ("bcc-10000", {"bcc": {"L": [S(f"b{i}@example.com") for i in range(10_000)]}}, "bcc"),
    ("encode-unknown", {"encode": S("Shift_JIS")}, "encode"),
    ("encode-lowercase", {"encode": S("utf-8")}, "encode"),
    ("encode-number", {"encode": N(8)}, "encode"),
    ("iso2022jp-unencodable", {"encode": S("ISO-2022-JP"), "subject": S("emoji 😀")}, "subject"),
    ("insert-code-string", {"insert_code": S("name=Alice")}, "insert_code"),
    ("insert-code-nested", {"insert_code": {"M": {"name": {"M": {"x": S("y")}}}}}, "insert_code"),
    ("insert-code-number", {"insert_code": {"M": {"n": N(1)}}}, "insert_code"),
    ("insert-code-bad-key", {"insert_code": {"M": {"a b": S("x")}}}, "insert_code"),
    ("insert-code-list", {"insert_code": {"L": [S("x")]}}, "insert_code"),
    ("send-after-words", {"send_after": S("next tuesday")}, "send_after"),
    ("send-after-no-offset", {"send_after": S("2026-12-01T09:00:00")}, "send_after"),
    ("send-after-number", {"send_after": N(1764000000)}, "send_after"),
    ("revision-string", {"revision": S("two")}, "revision"),
    ("revision-list", {"revision": {"L": []}}, "revision"),
    ("revision-bool", {"revision": {"BOOL": True}}, "revision"),
    ("to-bool", {"to": {"BOOL": False}}, "to"),
    ("to-too-long", {"to": S("a" * 250 + "@example.com")}, "to"),
    ("to-cr-only", {"to": S("a@example.com\rX-Injected: 1")}, "to"),
    ("subject-list", {"subject": {"L": [S("Hello")]}}, "subject"),
    ("subject-cr-only", {"subject": S("Hello\rBcc: victim@example.com")}, "subject"),
    ("text-map", {"text": {"M": {"body": S("x")}}}, "text"),
    ("bcc-map", {"bcc": {"M": {"a": S("b@example.com")}}}, "bcc"),
    ("reply-to-list", {"reply_to": {"L": [S("r@example.com")]}}, "reply_to"),
    ("from-name-lf", {"from_name": S("Shop\nX-Priority: 1")}, "from_name"),
    ("encode-empty", {"encode": S("")}, "encode"),
    (
        "insert-code-too-many",
        {"insert_code": {"M": {f"k{i}": S("v") for i in range(51)}}},
        "insert_code",
    ),
    ("send-after-impossible-date", {"send_after": S("2026-13-45T09:00:00+09:00")}, "send_after"),
    ("body-10mb", {"text": S("x" * 10_000_000)}, "text"),
    # blastengine's own limits (../shared/BLASTENGINE.md), refused before the API.
    ("subject-257-chars", {"subject": S("s" * 257)}, "subject"),
    ("text-over-30kb", {"text": S("t" * 30_001)}, "text"),
    ("text-over-30kb-in-utf8", {"text": S("\u3042" * 10_001)}, "text"),
    ("html-over-70kb", {"html": S("<p>" + "h" * 70_000 + "</p>")}, "html"),
    ("html-only-no-text-in-it", {"text": None, "html": S("<p> </p><img src=x>")}, "html"),
    ("from-name-51-chars", {"from_name": S("n" * 51)}, "from_name"),
    (
        "reply-to-name-51-chars",
        {"reply_to": S("r@example.com"), "reply_to_name": S("n" * 51)},
        "reply_to_name",
    ),
    ("reply-to-name-alone", {"reply_to_name": S("Support")}, "reply_to_name"),
    ("to-under-6-chars", {"to": S("a@b.c")}, "to"),
    (
        "insert-code-underscore-key",
        {"insert_code": {"M": {"first_name": S("Hanako")}}},
        "insert_code",
    ),
    ("insert-code-dash-key", {"insert_code": {"M": {"first-name": S("Hanako")}}}, "insert_code"),
    (
        "unsubscribe-url-ftp",
        {"list_unsubscribe_url": S("ftp://example.com/u")},
        "list_unsubscribe_url",
    ),
    (
        "unsubscribe-url-too-long",
        {"list_unsubscribe_url": S("https://example.com/" + "u" * 440)},
        "list_unsubscribe_url",
    ),
    (
        "unsubscribe-mailto-plain-address",
        {"list_unsubscribe_mailto": S("u@example.com")},
        "list_unsubscribe_mailto",
    ),
    ("unsubscribe-url-number", {"list_unsubscribe_url": N(1)}, "list_unsubscribe_url"),
    # A valid-looking time that overflows once converted to UTC, and one too far ahead.
    ("send-after-overflows-utc", {"send_after": S("9999-12-31T23:59:59-14:00")}, "send_after"),
    ("expires-at-overflows-utc", {"expires_at": S("9999-12-31T23:59:59-14:00")}, "expires_at"),
    ("send-after-years-ahead", {"send_after": S("2099-01-01T00:00:00+00:00")}, "send_after"),
    # Controls that RFC 5322 keeps out of header fields, and a bidi override.
    ("subject-nul", {"subject": S("Hi\x00there")}, "subject"),
    ("subject-line-separator", {"subject": S("Hi\u2028Bcc: x@example.com")}, "subject"),
    ("subject-nel", {"subject": S("Hi\x85there")}, "subject"),
    ("subject-escape", {"subject": S("Hi\x1b[31m")}, "subject"),
    ("from-name-nul", {"from_name": S("Shop\x00")}, "from_name"),
    ("from-name-bidi-override", {"from_name": S("Bank \u202egnp.exe")}, "from_name"),
    ("to-nul", {"to": S("a\x00@example.com")}, "to"),
    ("cc-item-nel", {"cc": {"L": [S("b@example.com\x85")]}}, "cc"),
    # A row that names a template takes its parts from it, and names it properly.
    ("template-with-text", {"template": S("order"), "subject": None}, "text"),
    ("template-with-html", {"template": S("order"), "text": None, "html": S("<p>x</p>")}, "html"),
    (
        "template-with-insert-code",
        {"template": S("order"), "text": None, "insert_code": {"M": {"a": S("b")}}},
        "insert_code",
    ),
    ("template-bad-name", {"template": S("Order Mail"), "text": None}, "template"),
    ("template-bad-version", {"template": S("order@latest"), "text": None}, "template"),
    ("template-number", {"template": N(3), "text": None}, "template"),
    ("vars-without-template", {"vars": {"M": {"a": S("b")}}}, "template"),
    ("language-without-template", {"language": S("ja")}, "template"),
    ("vars-not-a-map", {"template": S("order"), "text": None, "vars": S("a=b")}, "vars"),
    ("vars-too-deep", {"template": S("order"), "text": None, "vars": _nested(6)}, "vars"),
    ("language-bad", {"template": S("order"), "text": None, "language": S("Ja_jp")}, "language"),
]


def malformed_rows() -> list[tuple[str, dict[str, Any], str]]:
    """(case name, full raw image with id = case name, attribute named in the reason)."""
    return [(name, _row(name, **overrides), attr) for name, overrides, attr in MALFORMED]


def storable_malformed_rows() -> list[tuple[str, dict[str, Any], str]]:
    """The cases DynamoDB can hold (a table can receive them): under its 400 KB item limit,
    and encodable as UTF-8 (a lone surrogate is not)."""
    return [case for case in malformed_rows() if _storable(case[1])]


def _storable(raw: dict[str, Any]) -> bool:
    try:
        size = len(json.dumps(raw, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return size < 400_000  # DynamoDB's item size limit
