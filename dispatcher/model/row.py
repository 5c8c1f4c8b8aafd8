"""The send-table row: its two attribute sets, and one parsed value of it.

A row carries two kinds of attributes (``DESIGN.md``, "Data model"): *request* attributes that
the application writes and that make up the mail, and *bookkeeping* attributes that only the
dispatcher writes. Triage, the content hash and the store's content conditions all lean on
that split, so it is defined here once.

A stream record's image is read once into a :class:`Row`; everything after that (validation,
the failure policy, the store's conditional writes) takes the row, never the raw image.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from dispatcher.model.unsettled import Unsettled

__all__ = [
    "ADDRESS_LIST_ATTRIBUTES",
    "BOOKKEEPING_ATTRIBUTES",
    "PROVIDERS",
    "REQUEST_ATTRIBUTES",
    "STRING_ATTRIBUTES",
    "STRUCTURED_ATTRIBUTES",
    "WAITING_STATUSES",
    "AttributeValue",
    "ErrorKind",
    "Image",
    "Row",
    "RowStatus",
    "as_item_value",
    "content_hash",
    "normalise_address",
    "plain",
    "recipient_digest",
    "request_attributes",
    "string_attribute",
]

#: A DynamoDB attribute value in the low-level wire shape, e.g. ``{"S": "hello"}``.
AttributeValue = dict[str, Any]
#: A stream image or item: attribute name -> wire value.
Image = Mapping[str, Any]

#: The request attributes by the DynamoDB type they take, each in the order a person reads a
#: mail (the console's form shows them so): one string each; lists of addresses (L of S);
#: structured ones (``insert_code`` a map of strings, ``insert_code_unescaped`` a list of its
#: keys, ``attachments`` a list of maps).
STRING_ATTRIBUTES = (
    "to",
    "subject",
    "text",
    "html",
    "from",
    "from_name",
    "reply_to",
    "reply_to_name",
    "encode",
    "provider",
    "list_unsubscribe_url",
    "list_unsubscribe_mailto",
    "send_after",
    "expires_at",
    "resent_from",
    "template",
    "language",
    "category",
)
ADDRESS_LIST_ATTRIBUTES = ("cc", "bcc")
STRUCTURED_ATTRIBUTES = ("insert_code", "insert_code_unescaped", "attachments", "vars")
#: What a producer writes: the above, and ``revision`` (a number bumped to send a row again).
REQUEST_ATTRIBUTES = frozenset(
    {*STRING_ATTRIBUTES, *ADDRESS_LIST_ATTRIBUTES, *STRUCTURED_ATTRIBUTES, "revision"}
)
BOOKKEEPING_ATTRIBUTES = frozenset(
    {
        "status",
        "attempts",
        "last_error",
        "error_kind",
        "http_status",
        "failed_at",
        "retry_at",
        "fired_at",
        "unsettled",
    }
)


#: The providers a row's ``provider`` attribute may name, and ``MAIL_PROVIDER`` and
#: ``FAILOVER_PROVIDER`` too: a word of the row's vocabulary, like its statuses, so the parser
#: checks it without knowing the deployment (``dispatcher/providers/`` has a package for each).
PROVIDERS = ("blastengine", "ses")


class ErrorKind(StrEnum):
    """Why a row was not sent; stamped as ``error_kind``."""

    INVALID = "invalid"
    REJECTED = "rejected"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    CONFIG = "config"
    SUPPRESSED = "suppressed"
    #: The provider may have taken the mail (its answer never came): the row waits for the
    #: look-up that settles it (docs/concepts/exactly-once.md).
    AMBIGUOUS = "ambiguous"
    #: Not sent by its ``expires_at``: never sent (a password reset an hour late is worse
    #: than none).
    EXPIRED = "expired"
    #: Its ``to`` is outside ``RECIPIENT_ALLOWLIST`` (a staging deployment).
    BLOCKED = "blocked"
    #: The template it names cannot give its mail (unknown, a missing variable, an error on
    #: a line, past its limits): fix the template, then re-fire the rows of this kind.
    TEMPLATE = "template"
    #: Its category's bounces or complaints passed their share: held until resumed.
    PAUSED = "paused"


class RowStatus(StrEnum):
    """The ``status`` the dispatcher stamps on a row it keeps."""

    FAILED = "failed"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"
    #: Its category's sending is paused by the reputation guard: resumed by a person.
    PAUSED = "paused"


#: Statuses that mean "the dispatcher has dealt with this row and is waiting".
WAITING_STATUSES = frozenset(s.value for s in RowStatus)


@dataclass(frozen=True)
class Row:
    """One send-table row as read from a stream image or a table item.

    ``image`` stays beside the parsed fields because the store's writes are conditioned on
    the row still holding exactly the request attributes that were read.
    """

    id: str
    image: Image
    status: str | None = None
    attempts: int = 0
    retry_at: str | None = None
    #: When the sweeper or a person last re-fired the row; cleared by the next stamp. While
    #: set, the dispatcher may be sending the row.
    fired_at: str | None = None

    @classmethod
    def from_image(cls, row_id: str, image: Image) -> Row:
        return cls(
            id=row_id,
            image=image,
            status=string_attribute(image, "status"),
            attempts=_count(image.get("attempts")),
            retry_at=string_attribute(image, "retry_at"),
            fired_at=string_attribute(image, "fired_at"),
        )

    @classmethod
    def from_stream(cls, row_id: str, image: Image) -> Row:
        """A row from a stream record's image, its values as a table read gives them:
        Lambda's event carries binary values (``B``, ``BS``) base64-encoded, where a read of
        the table (and every condition written against it) has bytes."""
        return cls.from_image(row_id, {name: as_item_value(v) for name, v in image.items()})

    @classmethod
    def from_item(cls, item: Image) -> Row | None:
        """A table item's row, or None if its ``id`` is not a string (DynamoDB refuses that,
        but a hand-made event may carry anything)."""
        row_id = string_attribute(item, "id")
        return None if row_id is None else cls.from_image(row_id, item)

    @property
    def request(self) -> dict[str, AttributeValue]:
        return request_attributes(self.image)

    def same_request(self, other: Row, *, ignoring: frozenset[str] = frozenset()) -> bool:
        """Whether both rows ask for the same mail: their request attributes (but those
        ``ignoring`` names) compared like with like (sets in any order, numbers by value,
        binaries as bytes)."""
        mine = {k: v for k, v in self.request.items() if k not in ignoring}
        theirs = {k: v for k, v in other.request.items() if k not in ignoring}
        return mine.keys() == theirs.keys() and all(
            _canonical(mine[name]) == _canonical(theirs[name]) for name in mine
        )

    @property
    def content_hash(self) -> str:
        return content_hash(self.image)

    @property
    def unsettled(self) -> Unsettled | None:
        """A send of this row the provider may have taken, still to be looked up."""
        return Unsettled.from_attribute(self.image.get("unsettled"))

    @property
    def in_flight(self) -> bool:
        """The dispatcher may be on this row now: it has no status yet, or was re-fired and
        not stamped since."""
        return self.status is None or self.fired_at is not None

    @property
    def prior_attempts(self) -> int:
        """Attempts already spent: carried while the row is deferred, fresh after a re-fire
        or an edit (a person looked at it)."""
        return self.attempts if self.status == RowStatus.DEFERRED else 0


#: The category of a row that names none: mail a person asked for (a receipt, a password
#: reset), never paused by another category's reputation, never unsubscribed from.
TRANSACTIONAL = "transactional"
#: A category's name (``MAIL_CATEGORIES``, a row's ``category``).
CATEGORY = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def parse_categories(raw: str | None) -> tuple[str, ...]:
    """``MAIL_CATEGORIES`` (comma- or space-separated) as names, ``transactional`` first;
    ValueError naming one that is no name."""
    names = [n.strip().lower() for n in (raw or "").replace(",", " ").split() if n.strip()]
    for name in names:
        if not CATEGORY.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a category name (a-z first, then a-z, 0-9, '_', '-'; at most 32)"
            )
    return (TRANSACTIONAL, *dict.fromkeys(n for n in names if n != TRANSACTIONAL))


def normalise_address(address: str) -> str:
    """The form an address is kept, keyed and compared in (the suppression list, the
    history's by-recipient index, a bounce's recipient)."""
    return address.strip().lower()


def checked_address(value: str) -> str:
    """An address typed by a person (a CLI argument, a console field), checked and
    normalised; ValueError with the reason when it is not one."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an email address ({exc})") from None
    return normalise_address(value)


def recipient_digest(address: str) -> str:
    """What a history item keeps of each recipient (``recipient_digests``): enough to tell
    whether a bounce names one of its recipients, without keeping bcc addresses in clear."""
    return hashlib.sha256(normalise_address(address).encode("utf-8")).hexdigest()[:32]


def string_attribute(image: Image, name: str) -> str | None:
    """The value of a string (``S``) attribute, or None if absent or of another type."""
    value = image.get(name)
    text = value.get("S") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None


def request_attributes(image: Image) -> dict[str, AttributeValue]:
    """The request attributes present in ``image``, in wire shape."""
    return {name: value for name, value in image.items() if name in REQUEST_ATTRIBUTES}


def content_hash(image: Image) -> str:
    """A stable hash of exactly the request attributes, the idempotency key's second half."""
    canonical = json.dumps(
        {name: _canonical(value) for name, value in request_attributes(image).items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,  # lone surrogates from a bad event must not break hashing
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def plain(item: Image) -> dict[str, Any]:
    """An item as plain JSON-able values, for people and scripts (numbers as int/float).

    An attribute that is not a well-formed wire value is shown as it is, never raised on:
    the CLI and the console must render any row they find.
    """
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()

    def simple(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: simple(v) for k, v in value.items()}
        if isinstance(value, list | set):
            return [simple(v) for v in value]
        return value

    def one(value: Any) -> Any:
        try:
            return simple(deserializer.deserialize(value))
        except (TypeError, ValueError, AttributeError, KeyError):
            return value if _json_able(value) else repr(value)

    return {k: one(v) for k, v in item.items()}


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _count(value: Any) -> int:
    raw = value.get("N") if isinstance(value, dict) else None
    try:
        return max(0, int(raw)) if isinstance(raw, str) else 0
    except ValueError:
        return 0


def as_item_value(value: Any) -> Any:
    """A wire value from a stream event as the table holds it: ``B`` and ``BS`` members as
    bytes (the event has them base64-encoded), in maps and lists too; anything else as it is
    (an undecodable value is left for the parser to name)."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    [(tag, inner)] = value.items()
    if tag == "B" and isinstance(inner, str):
        return {"B": _decoded(inner)}
    if tag == "BS" and isinstance(inner, list):
        return {"BS": [_decoded(v) if isinstance(v, str) else v for v in inner]}
    if tag == "M" and isinstance(inner, dict):
        return {"M": {k: as_item_value(v) for k, v in inner.items()}}
    if tag == "L" and isinstance(inner, list):
        return {"L": [as_item_value(v) for v in inner]}
    return value


def _decoded(text: str) -> bytes | str:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text


def _canonical(value: Any) -> Any:
    """One form for equal values: set members ordered (DynamoDB keeps no order), numbers by
    value (``1.0`` is ``1``), binaries as base64 text (JSON-able, for the content hash)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: _canonical_member(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _canonical_member(tag: str, value: Any) -> Any:
    if tag == "N" and isinstance(value, str):
        return _number(value)
    if tag in ("SS", "NS", "BS") and isinstance(value, list):
        members = [
            _number(v) if tag == "NS" and isinstance(v, str) else _canonical(v) for v in value
        ]
        return sorted(members, key=str)
    return _canonical(value)


def _number(text: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return str(number.normalize()) if number.is_finite() else text
