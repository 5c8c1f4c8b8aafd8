"""The mail a send-table row asks for, validated: :func:`parse_message` and :class:`Message`.

:func:`parse_message` turns a :class:`~dispatcher.row.Row` into a :class:`Message` or a list
of readable problems. It never raises halfway: a malformed row must end ``failed`` with a
reason, not crash the batch. Everything the provider would refuse is refused here, before the
row takes an idempotency record or a rate-limit slot.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from email_validator import EmailNotValidError, validate_email

from dispatcher.clock import parse_iso
from dispatcher.html_text import html_to_text
from dispatcher.row import Image, Row, string_attribute
from dispatcher.settings import PROVIDERS

__all__ = [
    "MAX_BCC",
    "MAX_CC",
    "MAX_HTML_BYTES",
    "MAX_SEND_AFTER",
    "MAX_TEXT_BYTES",
    "Attachment",
    "Encode",
    "Message",
    "expiry_of",
    "parse_message",
]

# Limits of blastengine's transaction API (../shared/BLASTENGINE.md, from its API reference),
# checked here so a row over them fails `invalid` before any idempotency record, rate-limit
# slot or API call. Sizes are bytes as sent, in the row's encoding; "KB" read as 1,000 bytes,
# the reading that never passes a part the API would refuse.
MAX_CC = 10
MAX_BCC = 10
MAX_SUBJECT_CHARS = 256
MAX_TEXT_BYTES = 30_000
MAX_HTML_BYTES = 70_000
MAX_NAME_CHARS = 50  # from_name, reply_to_name
ADDRESS_CHARS = (6, 254)
MAX_UNSUBSCRIBE_CHARS = 450
MAX_INSERT_CODES = 50
MAX_ATTACHMENTS = 100
#: Extensions blastengine refuses in an attachment's name (BLASTENGINE.md, third-party source).
REFUSED_EXTENSIONS = frozenset(
    {
        ".ade", ".adp", ".apk", ".appx", ".appxbundle", ".bat", ".bz2", ".cab", ".chm", ".cmd",
        ".com", ".cpl", ".dll", ".dmg", ".ex", ".ex_", ".exe", ".gz", ".hta", ".ins", ".isp",
        ".iso", ".jar", ".js", ".jse", ".lib", ".lnk", ".mde", ".msc", ".msi", ".msix",
        ".msixbundle", ".msp", ".mst", ".nsh", ".pif", ".ps1", ".scr", ".sct", ".shb", ".sys",
        ".tgz", ".vb", ".vbe", ".vbs", ".vxd", ".wsc", ".wsf", ".wsh", ".zip",
    }
)  # fmt: skip
#: How far ahead ``send_after`` may lie: a row is a queue entry, not a calendar.
MAX_SEND_AFTER = timedelta(days=366)
_INSERT_CODE_KEY = re.compile(r"^[A-Za-z0-9]+$")
_HEADER_FIELDS = ("to", "subject", "from", "from_name", "reply_to", "reply_to_name")


class Encode(StrEnum):
    """Character set of the sent mail; ISO-2022-JP is for Japanese mobile carriers."""

    UTF_8 = "UTF-8"
    ISO_2022_JP = "ISO-2022-JP"


@dataclass(frozen=True)
class Attachment:
    """A file a row names in the attachments bucket; ``size`` and ``etag`` are known once the
    object has been looked up (:mod:`dispatcher.attachments`), just before the send."""

    key: str
    filename: str
    size: int | None = None
    etag: str | None = None
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Message:
    """One validated mail, ready for a provider."""

    id: str
    to: str
    subject: str
    from_email: str
    from_name: str
    text: str  # the plain part the API requires: the row's, or derived from its html
    html: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: str | None = None
    reply_to_name: str = ""
    list_unsubscribe_url: str | None = None
    list_unsubscribe_mailto: str | None = None
    encode: Encode = Encode.UTF_8
    insert_code: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    #: cc/bcc addresses the suppression list kept out of this send.
    left_out: tuple[str, ...] = ()
    send_after: datetime | None = None
    #: Not sent after this: the row fails ``expired`` instead (``expires_at``).
    expires_at: datetime | None = None
    content_hash: str = ""
    #: The provider the row pins (``provider``); None: the deployment's choice.
    provider: str | None = None
    #: Who the row named, when ``REDIRECT_ALL_TO`` sent the mail elsewhere.
    original_recipients: tuple[str, ...] = ()

    @property
    def recipients(self) -> tuple[str, ...]:
        return (self.to, *self.cc, *self.bcc)

    def filled(self) -> Message:
        """This message with its ``insert_code`` variables (``__name__``) substituted in
        the subject and both bodies, as blastengine fills them; a provider without the
        feature sends this."""
        if not self.insert_code:
            return self
        codes = {f"__{key}__": value for key, value in self.insert_code.items()}
        pattern = re.compile("|".join(re.escape(code) for code in codes))

        def fill(part: str) -> str:
            return pattern.sub(lambda m: codes[m.group()], part)

        return replace(
            self,
            subject=fill(self.subject),
            text=fill(self.text),
            html=None if self.html is None else fill(self.html),
            insert_code={},
        )


def expiry_of(row: Row) -> datetime | None:
    """The row's ``expires_at`` if it is a time with an offset (the sweeper's question,
    without parsing the whole row); whether it is in range is the parser's to say."""
    return parse_iso(string_attribute(row.image, "expires_at"))


def parse_message(
    row: Row,
    *,
    default_from_email: str,
    default_from_name: str = "",
    now: datetime | None = None,
) -> Message | list[str]:
    """Validate a send-table row's request attributes.

    ``now`` bounds ``send_after`` (at most :data:`MAX_SEND_AFTER` ahead); default: the time
    of the call.

    Returns
    -------
    Message | list[str]
        The message, or every problem found, each naming its attribute (``"to: missing"``).
    """
    image = row.image
    p = _Problems(now or datetime.now(UTC))
    to = p.address("to", p.string(image, "to", required=True))
    subject = p.string(image, "subject", required=True)
    if subject is not None and not subject.strip():
        p.add("subject", "must not be empty")
    elif subject is not None and len(subject) > MAX_SUBJECT_CHARS:
        p.add("subject", f"is {len(subject)} characters, over the limit of {MAX_SUBJECT_CHARS}")
    text = p.string(image, "text")
    html = p.string(image, "html")
    if "text" not in image and "html" not in image:
        p.add("text/html", "missing: the row needs a text or an html body")
    elif not (text or html) and not p.has("text", "html"):
        p.add("text/html", "the body is empty")
    elif not text and html and not p.has("html"):
        text = _derived_text(p, html)

    from_email = p.address("from", p.string(image, "from")) if "from" in image else None
    from_name = p.name(image, "from_name")
    reply_to = p.address("reply_to", p.string(image, "reply_to")) if "reply_to" in image else None
    reply_to_name = p.name(image, "reply_to_name")
    if reply_to_name is not None and reply_to is None and not p.has("reply_to"):
        p.add("reply_to_name", "needs a reply_to address")
    unsubscribe_url = p.unsubscribe(image, "list_unsubscribe_url", ("http://", "https://"))
    unsubscribe_mailto = p.unsubscribe(image, "list_unsubscribe_mailto", ("mailto:",))
    cc = p.address_list(image, "cc", MAX_CC)
    bcc = p.address_list(image, "bcc", MAX_BCC)
    encode = p.encode(image)
    provider = p.provider(image)
    insert_code = p.insert_code(image)
    attachments = p.attachments(image)
    send_after = p.timestamp(image, "send_after")
    expires_at = p.timestamp(image, "expires_at", bounded=False)
    if send_after is not None and expires_at is not None and send_after > expires_at:
        p.add("send_after", "is after expires_at: the mail could never be sent")
    p.number(image, "revision")

    for name in _HEADER_FIELDS:
        value = string_attribute(image, name)
        problem = _header_problem(value) if value is not None else None
        if problem is not None:
            p.add(name, problem)
    codec = "iso2022_jp" if encode is Encode.ISO_2022_JP else "utf-8"
    parts = (("subject", subject), ("from_name", from_name), ("text", text), ("html", html))
    for name, value in parts:
        if value and codec != "utf-8" and not p.has(name) and not _encodable(value, codec):
            p.add(name, "has characters that ISO-2022-JP cannot encode")
    for name, value, limit in (("text", text, MAX_TEXT_BYTES), ("html", html, MAX_HTML_BYTES)):
        size = _encoded_size(value, codec) if value and not p.has(name) else None
        if size is not None and size > limit:
            what = "is" if name in image else "(the plain text derived from html) is"
            p.add(name, f"{what} {size:,} bytes as sent, over the API's limit of {limit:,}")

    if p.problems:
        return p.problems
    assert to is not None  # guaranteed by the empty problem list
    assert subject is not None
    return Message(
        id=row.id,
        to=to,
        subject=subject,
        from_email=from_email or default_from_email,
        from_name=from_name if from_name is not None else default_from_name,
        text=text or "",
        html=html or None,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        reply_to_name=reply_to_name or "",
        list_unsubscribe_url=unsubscribe_url,
        list_unsubscribe_mailto=unsubscribe_mailto,
        encode=encode or Encode.UTF_8,
        insert_code=insert_code,
        attachments=attachments,
        send_after=send_after,
        expires_at=expires_at,
        content_hash=row.content_hash,
        provider=provider,
    )


class _Problems:
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

    def name(self, image: Image, name: str) -> str | None:
        value = self.string(image, name)
        if value is not None and len(value) > MAX_NAME_CHARS:
            self.add(name, f"is {len(value)} characters, over the API's limit of {MAX_NAME_CHARS}")
            return None
        return value

    def unsubscribe(self, image: Image, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.string(image, name)
        if value is None:
            return None
        if not value.lower().startswith(schemes) or len(value) <= len(schemes[0]) or " " in value:
            self.add(name, f"{_clip(value)!r} must be a {' or '.join(schemes)} URI")
            return None
        if len(value) > MAX_UNSUBSCRIBE_CHARS:
            self.add(
                name, f"is {len(value)} characters, over the API's limit of {MAX_UNSUBSCRIBE_CHARS}"
            )
            return None
        if _header_problem(value) is not None:
            self.add(name, "contains a control character or line break")
            return None
        return value

    def string(self, image: Image, name: str, *, required: bool = False) -> str | None:
        if name not in image:
            if required:
                self.add(name, "missing")
            return None
        value = _typed(image[name], "S")
        if not isinstance(value, str):
            self.add(name, f"must be a string (S), got {_type_name(image[name])}")
            return None
        if not _is_utf8(value):
            self.add(name, "is not valid UTF-8")
            return None
        return value

    def address(self, name: str, value: str | None) -> str | None:
        if value is None:
            return None
        if _header_problem(value) is not None:
            return None  # reported once, by the header check, with the character named
        try:
            address = validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            self.add(name, f"{_clip(value)!r} is not a valid address ({exc})")
            return None
        low, high = ADDRESS_CHARS
        if not low <= len(address) <= high:
            self.add(
                name, f"{_clip(value)!r} is {len(address)} characters; the API takes {low}-{high}"
            )
            return None
        return address

    def address_list(self, image: Image, name: str, limit: int) -> tuple[str, ...]:
        if name not in image:
            return ()
        items = _typed(image[name], "L")
        if not isinstance(items, list):
            self.add(name, f"must be a list of strings (L), got {_type_name(image[name])}")
            return ()
        if len(items) > limit:
            self.add(name, f"has {len(items)} addresses, over the provider's limit of {limit}")
            return ()
        out: list[str] = []
        for index, item in enumerate(items):
            value = _typed(item, "S") if isinstance(item, dict) else None
            label = f"{name}[{index}]"
            if not isinstance(value, str):
                self.add(name, f"{label} must be a string (S), got {_type_name(item)}")
            elif (problem := _header_problem(value)) is not None:
                self.add(name, f"{label} {problem}")
            elif (address := self.address(name, value)) is not None:
                out.append(address)
        return tuple(out)

    def encode(self, image: Image) -> Encode | None:
        raw = self.string(image, "encode")
        if raw is None:
            return None
        try:
            return Encode(raw)
        except ValueError:
            allowed = ", ".join(e.value for e in Encode)
            self.add("encode", f"{_clip(raw)!r} is not one of {allowed}")
            return None

    def provider(self, image: Image) -> str | None:
        raw = self.string(image, "provider")
        if raw is None:
            return None
        if raw not in PROVIDERS:
            self.add("provider", f"{_clip(raw)!r} is not one of {', '.join(PROVIDERS)}")
            return None
        return raw

    def insert_code(self, image: Image) -> dict[str, str]:
        if "insert_code" not in image:
            return {}
        mapping = _typed(image["insert_code"], "M")
        if not isinstance(mapping, dict):
            self.add(
                "insert_code",
                f"must be a map of strings (M), got {_type_name(image['insert_code'])}",
            )
            return {}
        if len(mapping) > MAX_INSERT_CODES:
            self.add(
                "insert_code", f"has {len(mapping)} keys, over the limit of {MAX_INSERT_CODES}"
            )
            return {}
        out: dict[str, str] = {}
        for key, item in mapping.items():
            value = _typed(item, "S") if isinstance(item, dict) else None
            if not _INSERT_CODE_KEY.match(str(key)):
                self.add(
                    "insert_code",
                    f"key {_clip(str(key))!r} may hold only ASCII letters and digits "
                    "(blastengine refuses '_' and anything else in a key): rename it, "
                    "e.g. 'firstname', and its placeholder to __firstname__",
                )
            elif not isinstance(value, str):
                self.add(
                    "insert_code", f"value of {key!r} must be a string (S), got {_type_name(item)}"
                )
            elif not _is_utf8(value):
                self.add("insert_code", f"value of {key!r} is not valid UTF-8")
            else:
                out[key] = value
        return out

    def attachments(self, image: Image) -> tuple[Attachment, ...]:
        if "attachments" not in image:
            return ()
        items = _typed(image["attachments"], "L")
        if not isinstance(items, list):
            got = _type_name(image["attachments"])
            self.add("attachments", f"must be a list of maps (L of M), got {got}")
            return ()
        if len(items) > MAX_ATTACHMENTS:
            self.add("attachments", f"has {len(items)} files, over the API's {MAX_ATTACHMENTS}")
            return ()
        out: list[Attachment] = []
        for index, item in enumerate(items):
            label = f"attachments[{index}]"
            entry = _typed(item, "M")
            key = _typed(entry.get("key"), "S") if isinstance(entry, dict) else None
            if not isinstance(key, str) or not key.strip():
                self.add("attachments", f"{label} needs a key (S): the object's key in the bucket")
                continue
            raw_name = entry.get("filename") if isinstance(entry, dict) else None
            filename = _typed(raw_name, "S") if raw_name is not None else key.rsplit("/", 1)[-1]
            problem = _filename_problem(filename)
            if problem is not None:
                self.add("attachments", f"{label} {problem}")
                continue
            assert isinstance(filename, str)
            out.append(Attachment(key=key, filename=filename))
        return tuple(out)

    def timestamp(self, image: Image, name: str, *, bounded: bool = True) -> datetime | None:
        raw = self.string(image, name)
        if raw is None:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            self.add(name, f"{_clip(raw)!r} is not an ISO-8601 timestamp")
            return None
        if moment.tzinfo is None:
            self.add(name, f"{_clip(raw)!r} has no UTC offset (write e.g. 2026-01-31T09:00+09:00)")
            return None
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 lies past the year 9999 in UTC
            self.add(name, f"{_clip(raw)!r} is out of range")
            return None
        if bounded and moment > self.now + MAX_SEND_AFTER:
            self.add(
                name,
                f"{_clip(raw)!r} is more than {MAX_SEND_AFTER.days} days ahead; "
                "a row cannot wait longer",
            )
            return None
        return moment

    def number(self, image: Image, name: str) -> None:
        if name not in image:
            return
        raw = _typed(image[name], "N")
        try:
            Decimal(str(raw)) if isinstance(raw, str) else Decimal("x")
        except InvalidOperation:
            self.add(name, f"must be a number (N), got {_type_name(image[name])}")


#: Characters no header field may carry: C0 controls but TAB (CR and LF are header
#: injection), DEL, C1 controls (NEL among them), and Unicode's line and paragraph separators.
_HEADER_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
#: Bidirectional embeddings, overrides and isolates: a display name or subject that carries
#: one can show its text in another order than it is (the "RLO" phishing trick).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_CONTROL_NAMES = {0x00: "NUL", 0x7F: "DEL", 0x85: "NEL", 0x2028: "LINE SEPARATOR"}


def _header_problem(value: str) -> str | None:
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


def _typed(value: Any, type_tag: str) -> Any:
    """The payload of a wire value if it has exactly ``type_tag``, else None."""
    if isinstance(value, dict) and len(value) == 1 and type_tag in value:
        return value[type_tag]
    return None


def _type_name(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return type(value).__name__


def _filename_problem(filename: Any) -> str | None:
    if not isinstance(filename, str) or not filename.strip():
        return "needs a filename (S), or a key whose last segment can be one"
    if "/" in filename or "\\" in filename or len(filename) > 255:
        return f"filename {_clip(filename)!r} must be one name of at most 255 characters"
    if _header_problem(filename) is not None:
        return f"filename {_clip(filename)!r} contains a control character"
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in REFUSED_EXTENSIONS:
        return f"filename {_clip(filename)!r}: blastengine refuses {suffix} files"
    return None


def _derived_text(p: _Problems, html: str) -> str | None:
    """The plain part for a row with only html (the API requires one)."""
    text = html_to_text(html)
    if not text.strip():
        p.add("html", "has no readable text for the plain-text part the API requires; add `text`")
        return None
    return text


def _encoded_size(value: str, codec: str) -> int | None:
    try:
        return len(value.encode(codec))
    except UnicodeEncodeError:
        return None


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodable(value: str, codec: str) -> bool:
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _clip(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
