"""A row's attributes read with readable problems: what
:func:`~dispatcher.model.message.parse_message` is made of.

:class:`Problems` reads one attribute at a time from a DynamoDB image and records, for each
attribute, the first thing wrong with it in words a person fixing the row can act on; it
never raises, so one pass reports everything. The limits are blastengine's
(:mod:`dispatcher.model.blastengine_limits`); header safety (line breaks, controls, bidirectional
overrides) is checked once for every field that becomes a header.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from dispatcher.model.blastengine_limits import (
    ADDRESS_CHARS,
    HTML_BYTES,
    INSERT_CODE_NAME,
    INSERT_CODES,
    NAME_CHARS,
    REFUSED_EXTENSIONS,
    UNSUBSCRIBE_CHARS,
)
from dispatcher.model.row import CATEGORY, PROVIDERS, TRANSACTIONAL, Image, normalise_address

__all__ = [
    "MAX_SEND_AFTER",
    "Problems",
    "clip",
    "encodable",
    "encoded_size",
    "filename_problem",
    "header_problem",
    "sender_allowed",
    "type_name",
    "typed",
]

#: How far ahead ``send_after`` may lie: a row is a queue entry, not a calendar.
MAX_SEND_AFTER = timedelta(days=366)


class Problems:
    """Collects readable problems while reading attributes, so one pass reports them all."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.problems: list[str] = []
        self._names: set[str] = set()

    def add(self, name: str, problem: str) -> None:
        if name not in self._names:  # the first problem of an attribute is the useful one
            self._names.add(name)
            self.problems.append(f"{name}: {problem}")

    def has(self, *names: str) -> bool:
        return any(n in self._names for n in names)

    def name(self, image: Image, name: str, *, limit: int = NAME_CHARS) -> str | None:
        value = self.string(image, name)
        if value is not None and len(value) > limit:
            self.add(name, f"is {len(value)} characters, over the limit of {limit}")
            return None
        return value

    def unsubscribe(self, image: Image, name: str, scheme: str) -> str | None:
        """One ``https`` (or ``mailto``) URI, as ``List-Unsubscribe`` carries it between
        ``<`` and ``>``: a ``>``, a comma or a space would end it and start another."""
        value = self.string(image, name)
        if value is None:
            return None
        if header_problem(value) is not None or _URI_BREAKS.search(value):
            self.add(
                name,
                f"{clip(value)!r} must be one {scheme} URI, without <, >, comma, space, "
                "quote or control character",
            )
            return None
        parts = urlsplit(value)
        where = parts.hostname if scheme == "https" else parts.path.partition("@")[2]
        if parts.scheme.lower() != scheme or not where:
            self.add(name, f"{clip(value)!r} must be a {scheme} URI")
            return None
        if len(value) > UNSUBSCRIBE_CHARS:
            self.add(
                name, f"is {len(value)} characters, over the API's limit of {UNSUBSCRIBE_CHARS}"
            )
            return None
        return value

    def key_list(self, image: Image, name: str, keys: Mapping[str, str]) -> frozenset[str]:
        """A list of ``insert_code`` keys (``insert_code_unescaped``)."""
        if name not in image:
            return frozenset()
        items = typed(image[name], "L")
        if not isinstance(items, list):
            self.add(
                name, f"must be a list of insert_code keys (L of S), got {type_name(image[name])}"
            )
            return frozenset()
        out = set()
        for item in items:
            key = typed(item, "S")
            if not isinstance(key, str) or key not in keys:
                self.add(name, f"{clip(str(key))!r} is not a key of insert_code")
            else:
                out.add(key)
        return frozenset(out)

    def string(self, image: Image, name: str, *, required: bool = False) -> str | None:
        if name not in image:
            if required:
                self.add(name, "missing")
            return None
        value = typed(image[name], "S")
        if not isinstance(value, str):
            self.add(name, f"must be a string (S), got {type_name(image[name])}")
            return None
        if not is_utf8(value):
            self.add(name, "is not valid UTF-8")
            return None
        return value

    def address(self, name: str, value: str | None) -> str | None:
        if value is None:
            return None
        if header_problem(value) is not None:
            return None  # reported once, by the header check, with the character named
        try:
            address = validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            self.add(name, f"{clip(value)!r} is not a valid address ({exc})")
            return None
        low, high = ADDRESS_CHARS
        if not low <= len(address) <= high:
            self.add(
                name, f"{clip(value)!r} is {len(address)} characters; the API takes {low}-{high}"
            )
            return None
        return address

    def address_list(self, image: Image, name: str, limit: int) -> tuple[str, ...]:
        if name not in image:
            return ()
        items = typed(image[name], "L")
        if not isinstance(items, list):
            self.add(name, f"must be a list of strings (L), got {type_name(image[name])}")
            return ()
        if len(items) > limit:
            self.add(name, f"has {len(items)} addresses, over the provider's limit of {limit}")
            return ()
        out: list[str] = []
        for index, item in enumerate(items):
            value = typed(item, "S") if isinstance(item, dict) else None
            label = f"{name}[{index}]"
            if not isinstance(value, str):
                self.add(name, f"{label} must be a string (S), got {type_name(item)}")
            elif (problem := header_problem(value)) is not None:
                self.add(name, f"{label} {problem}")
            elif (address := self.address(name, value)) is not None:
                out.append(address)
        return tuple(out)

    def category(self, image: Image, categories: tuple[str, ...] | None) -> str:
        """The row's ``category``: one of the deployment's ``categories`` (None: any name;
        the dispatcher knows them, a producer's check may not); absent: transactional."""
        raw = self.string(image, "category")
        if raw is None:
            return TRANSACTIONAL
        if not CATEGORY.fullmatch(raw):
            self.add("category", f"{clip(raw)!r} is not a category name (a-z, 0-9, '_', '-')")
        elif categories is not None and raw not in categories:
            self.add("category", f"{raw!r} is not one of MAIL_CATEGORIES ({', '.join(categories)})")
        return raw

    def provider(self, image: Image) -> str | None:
        raw = self.string(image, "provider")
        if raw is None:
            return None
        if raw not in PROVIDERS:
            self.add("provider", f"{clip(raw)!r} is not one of {', '.join(PROVIDERS)}")
            return None
        return raw

    def insert_code(self, image: Image) -> dict[str, str]:
        if "insert_code" not in image:
            return {}
        mapping = typed(image["insert_code"], "M")
        if not isinstance(mapping, dict):
            self.add(
                "insert_code",
                f"must be a map of strings (M), got {type_name(image['insert_code'])}",
            )
            return {}
        if len(mapping) > INSERT_CODES:
            self.add("insert_code", f"has {len(mapping)} keys, over the limit of {INSERT_CODES}")
            return {}
        out: dict[str, str] = {}
        for key, item in mapping.items():
            value = typed(item, "S") if isinstance(item, dict) else None
            if not INSERT_CODE_NAME.fullmatch(str(key)):
                self.add(
                    "insert_code",
                    f"key {clip(str(key))!r} may hold only ASCII letters and digits "
                    "(blastengine refuses '_' and anything else in a key): rename it, "
                    "e.g. 'firstname', and its placeholder to __firstname__",
                )
            elif not isinstance(value, str):
                self.add(
                    "insert_code", f"value of {key!r} must be a string (S), got {type_name(item)}"
                )
            elif not is_utf8(value):
                self.add("insert_code", f"value of {key!r} is not valid UTF-8")
            elif len(value.encode("utf-8")) > HTML_BYTES:
                self.add(
                    "insert_code",
                    f"value of {key!r} is {len(value.encode('utf-8')):,} bytes, more than any "
                    f"part of a mail may hold ({HTML_BYTES:,})",
                )
            else:
                out[key] = value
        return out

    def timestamp(self, image: Image, name: str, *, bounded: bool = True) -> datetime | None:
        raw = self.string(image, name)
        if raw is None:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            self.add(name, f"{clip(raw)!r} is not an ISO-8601 timestamp")
            return None
        if moment.tzinfo is None:
            self.add(name, f"{clip(raw)!r} has no UTC offset (write e.g. 2026-01-31T09:00+09:00)")
            return None
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 lies past the year 9999 in UTC
            self.add(name, f"{clip(raw)!r} is out of range")
            return None
        if bounded and moment > self.now + MAX_SEND_AFTER:
            self.add(
                name,
                f"{clip(raw)!r} is more than {MAX_SEND_AFTER.days} days ahead; "
                "a row cannot wait longer",
            )
            return None
        return moment

    def number(self, image: Image, name: str) -> None:
        if name not in image:
            return
        raw = typed(image[name], "N")
        try:
            Decimal(str(raw)) if isinstance(raw, str) else Decimal("x")
        except InvalidOperation:
            self.add(name, f"must be a number (N), got {type_name(image[name])}")


#: What ends a URI inside ``<...>`` or starts another: angle brackets, a comma, white space,
#: quotes.
_URI_BREAKS = re.compile(r"[<>,\s\"']")
#: Characters no header field may carry: C0 controls but TAB (CR and LF are header
#: injection), DEL, C1 controls (NEL among them), and Unicode's line and paragraph separators.
_HEADER_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
#: Bidirectional embeddings, overrides and isolates: a display name or subject that carries
#: one can show its text in another order than it is (the "RLO" phishing trick).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_CONTROL_NAMES = {0x00: "NUL", 0x7F: "DEL", 0x85: "NEL", 0x2028: "LINE SEPARATOR"}


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot go into a mail header, naming the character; None if it can."""
    if "\r" in value or "\n" in value:
        return "contains a line break (CR/LF), which would inject mail headers"
    if (found := _HEADER_CONTROLS.search(value)) is not None:
        return (
            f"contains {_describe(found.group())}, a control character mail headers may not carry"
        )
    if (found := _BIDI_CONTROLS.search(value)) is not None:
        return (
            f"contains {_describe(found.group())}, a bidirectional control that can make text "
            "read in another order than it is written; remove it"
        )
    return None


def _describe(char: str) -> str:
    code = ord(char)
    name = _CONTROL_NAMES.get(code) or unicodedata.name(char, "")
    return f"U+{code:04X}" + (f" ({name})" if name else "")


def typed(value: Any, type_tag: str) -> Any:
    """The payload of a wire value if it has exactly ``type_tag``, else None."""
    if isinstance(value, dict) and len(value) == 1 and type_tag in value:
        return value[type_tag]
    return None


def type_name(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return type(value).__name__


def filename_problem(filename: Any) -> str | None:
    if not isinstance(filename, str) or not filename.strip():
        return "needs a filename (S), or a key whose last segment can be one"
    if "/" in filename or "\\" in filename or len(filename) > 255:
        return f"filename {clip(filename)!r} must be one name of at most 255 characters"
    if header_problem(filename) is not None:
        return f"filename {clip(filename)!r} contains a control character"
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in REFUSED_EXTENSIONS:
        return f"filename {clip(filename)!r}: blastengine refuses {suffix} files"
    return None


def sender_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``address`` is one of ``allowed`` (addresses, and ``@domain``\\ s for any
    address at that domain), compared case-insensitively."""
    address = normalise_address(address)
    domain = "@" + address.rpartition("@")[2]
    return any(entry in (address, domain) for entry in allowed)


def encoded_size(value: str, codec: str) -> int | None:
    try:
        return len(value.encode(codec))
    except UnicodeEncodeError:
        return None


def is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encodable(value: str, codec: str) -> bool:
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def clip(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
