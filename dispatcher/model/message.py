"""The mail a send-table row asks for, validated: :func:`parse_message` and :class:`Message`.

:func:`parse_message` turns a :class:`~dispatcher.model.row.Row` into a :class:`Message` or a list
of readable problems. It never raises halfway: a malformed row must end ``failed`` with a
reason, not crash the batch. Everything the provider would refuse (blastengine's limits,
:mod:`dispatcher.model.blastengine_limits`) is refused here, before the row takes an idempotency
record or a rate-limit slot; the attribute checks are :mod:`dispatcher.model.checks`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from html import escape
from typing import Any

from dispatcher.model.blastengine_limits import (
    ATTACHMENT_FILES,
    HTML_BYTES,
    LIST_ADDRESSES,
    SUBJECT_CHARS,
    TEXT_BYTES,
)
from dispatcher.model.checks import (
    MAX_SEND_AFTER,
    Problems,
    clip,
    encodable,
    encoded_size,
    filename_problem,
    header_problem,
    sender_allowed,
    type_name,
    typed,
)
from dispatcher.model.html_text import html_to_text
from dispatcher.model.row import TRANSACTIONAL, Image, Row, string_attribute
from dispatcher.model.template_row import template_image, template_request
from dispatcher.model.unsettled import Unsettled, content_digest
from dispatcher.support.clock import parse_iso

__all__ = [
    "MAX_SEND_AFTER",
    "Attachment",
    "Encode",
    "Message",
    "expiry_of",
    "parse_message",
]

#: Fields that become mail headers: none may carry a line break or a control character.
#: Most characters of ``resent_from`` (an id and a time).
RESENT_FROM_CHARS = 600
_HEADER_FIELDS = ("to", "subject", "from", "from_name", "reply_to", "reply_to_name")


class Encode(StrEnum):
    """Character set of the sent mail; ISO-2022-JP is for Japanese mobile carriers."""

    UTF_8 = "UTF-8"
    ISO_2022_JP = "ISO-2022-JP"


@dataclass(frozen=True)
class Attachment:
    """A file a row names in the attachments bucket; ``size`` and ``etag`` are known once the
    object has been looked up (:mod:`dispatcher.providers.attachments`), just before the send."""

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
    #: The history item (``id @ sent_at``) this mail copies (``dispatcher resend``).
    resent_from: str | None = None
    #: The template version it was rendered from (``name@version``), for a template row.
    template: str | None = None
    #: What kind of mail it is (``category``): what unsubscribes, suppressions and the
    #: reputation guard are kept by.
    category: str = TRANSACTIONAL

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

    def as_sent(self) -> dict[str, Any]:
        """What the recipient got, as plain values: the mail with its ``insert_code`` filled
        in, kept for ``HISTORY_BODY_DAYS`` to be read and sent again (never credentials)."""
        done = self.filled()
        return {
            "to": done.to,
            "cc": list(done.cc),
            "bcc": list(done.bcc),
            "from": done.from_email,
            "from_name": done.from_name,
            "reply_to": done.reply_to,
            "reply_to_name": done.reply_to_name,
            "subject": done.subject,
            "text": done.text,
            "html": done.html,
            "encode": done.encode.value,
            "list_unsubscribe_url": done.list_unsubscribe_url,
            "list_unsubscribe_mailto": done.list_unsubscribe_mailto,
            "attachments": [{"key": a.key, "filename": a.filename} for a in done.attachments],
            "provider": done.provider,
        }

    def digests(self) -> tuple[str, ...]:
        """The digests a provider's stored copy of this message may have: as sent, and with
        the ``insert_code`` variables substituted (``BLASTENGINE.md``: not known which it
        keeps). A look-up compares them with what it finds."""
        sent = content_digest(self.subject, self.text, self.html)
        done = self.filled()
        filled = content_digest(done.subject, done.text, done.html)
        return (sent,) if filled == sent else (sent, filled)

    def unsettled(
        self, *, provider: str, opened_at: datetime, closed_at: datetime, reason: str
    ) -> Unsettled:
        """The marker of this message sent to ``provider`` between the two moments, with no
        answer: what a look-up must find before it is sent again."""
        return Unsettled(
            provider=provider,
            to=self.to,
            opened_at=opened_at,
            closed_at=closed_at,
            digests=self.digests(),
            content_hash=self.content_hash,
            reason=reason,
            subject=self.subject,
            row_id=self.id,
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
    allowed_from: tuple[str, ...] | None = None,
    rendered: tuple[str, Mapping[str, str | None]] | None = None,
    categories: tuple[str, ...] | None = None,
) -> Message | list[str]:
    """A send-table row's request attributes as a message, or every problem found, each
    naming its attribute (``"to: missing"``). ``now`` bounds ``send_after`` (at most
    :data:`MAX_SEND_AFTER` ahead); default: the time of the call. ``allowed_from`` are the
    senders a row may name (the deployment's ``Settings.allowed_senders``); None (callers
    that do not know the deployment: the CLI, the console, producers) checks no sender, the
    dispatcher does when it sends. Every
    limit is held on the mail as it will be sent, ``insert_code`` filled in, measured before
    anything is built. A row that names a template is read with its ``rendered`` parts (the
    version's ``name@version``, and its rendered ``subject``, ``text``, ``html`` and defaults:
    :mod:`dispatcher.templates.rows` renders them); without them it cannot be read."""
    p = Problems(now or datetime.now(UTC))
    image = row.image
    request = template_request(row)
    if isinstance(request, list):
        return request
    if request is not None:
        if rendered is None:
            return ["template: the row names a template, which only the dispatcher renders"]
        image = template_image(image, rendered[1])
    fields = _read(p, image)
    category = p.category(image, categories)
    if (
        allowed_from is not None
        and fields.from_email
        and not sender_allowed(fields.from_email, allowed_from)
    ):
        allowed = ", ".join(allowed_from)
        p.add("from", f"{fields.from_email!r} is not among the senders allowed ({allowed})")
    _check_as_sent(p, image, fields)
    if p.problems:
        return p.problems
    assert fields.to is not None  # guaranteed by the empty problem list
    assert fields.subject is not None
    return Message(
        id=row.id,
        to=fields.to,
        subject=fields.subject,
        from_email=fields.from_email or default_from_email,
        from_name=fields.from_name if fields.from_name is not None else default_from_name,
        text=fields.text or "",
        html=_filled(fields.html, fields.html_values) or None,
        cc=fields.cc,
        bcc=fields.bcc,
        reply_to=fields.reply_to,
        reply_to_name=fields.reply_to_name or "",
        list_unsubscribe_url=fields.unsubscribe_url,
        list_unsubscribe_mailto=fields.unsubscribe_mailto,
        encode=fields.encode or Encode.UTF_8,
        insert_code=fields.insert_code,
        attachments=fields.attachments,
        send_after=fields.send_after,
        expires_at=fields.expires_at,
        content_hash=row.content_hash,
        provider=fields.provider,
        resent_from=fields.resent_from,
        template=rendered[0] if rendered is not None else None,
        category=category,
    )


@dataclass(frozen=True)
class _Fields:
    """A row's request attributes as read, each None (or empty) where it had a problem."""

    to: str | None
    subject: str | None
    text: str | None
    html: str | None
    from_email: str | None
    from_name: str | None
    reply_to: str | None
    reply_to_name: str | None
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    encode: Encode | None
    provider: str | None
    insert_code: dict[str, str]
    #: Keys whose values go into ``html`` as they are (the row opted out of escaping).
    unescaped: frozenset[str]
    attachments: tuple[Attachment, ...]
    send_after: datetime | None
    expires_at: datetime | None
    resent_from: str | None = None

    @property
    def html_values(self) -> dict[str, str]:
        """The ``insert_code`` values as they go into ``html``: escaped, so a customer's name
        cannot put markup into mail from the sender's domain, but for the keys opted out."""
        return {
            key: value if key in self.unescaped else escape(value, quote=True)
            for key, value in self.insert_code.items()
        }


def _read(p: Problems, image: Image) -> _Fields:
    to = p.address("to", p.string(image, "to", required=True))
    subject = _subject(p, image)
    text, html = _bodies(p, image)
    reply_to = p.address("reply_to", p.string(image, "reply_to")) if "reply_to" in image else None
    reply_to_name = p.name(image, "reply_to_name")
    if reply_to_name is not None and reply_to is None and not p.has("reply_to"):
        p.add("reply_to_name", "needs a reply_to address")
    insert_code = p.insert_code(image)
    send_after = p.timestamp(image, "send_after")
    expires_at = p.timestamp(image, "expires_at", bounded=False)
    if send_after is not None and expires_at is not None and send_after > expires_at:
        p.add("send_after", "is after expires_at: the mail could never be sent")
    p.number(image, "revision")
    return _Fields(
        to=to,
        subject=subject,
        text=text,
        html=html,
        from_email=p.address("from", p.string(image, "from")) if "from" in image else None,
        from_name=p.name(image, "from_name"),
        reply_to=reply_to,
        reply_to_name=reply_to_name,
        unsubscribe_url=p.unsubscribe(image, "list_unsubscribe_url", "https"),
        unsubscribe_mailto=p.unsubscribe(image, "list_unsubscribe_mailto", "mailto"),
        cc=p.address_list(image, "cc", LIST_ADDRESSES),
        bcc=p.address_list(image, "bcc", LIST_ADDRESSES),
        encode=_encode(p, image),
        provider=p.provider(image),
        insert_code=insert_code,
        unescaped=p.key_list(image, "insert_code_unescaped", insert_code),
        attachments=_attachments(p, image),
        send_after=send_after,
        expires_at=expires_at,
        resent_from=p.name(image, "resent_from", limit=RESENT_FROM_CHARS),
    )


def _subject(p: Problems, image: Image) -> str | None:
    subject = p.string(image, "subject", required=True)
    if subject is not None and not subject.strip():
        p.add("subject", "must not be empty")
    elif subject is not None and len(subject) > SUBJECT_CHARS[1]:
        p.add("subject", f"is {len(subject)} characters, over the limit of {SUBJECT_CHARS[1]}")
    return subject


def _bodies(p: Problems, image: Image) -> tuple[str | None, str | None]:
    """The text and html parts; a missing text is derived from the html."""
    text = p.string(image, "text")
    html = p.string(image, "html")
    if "text" not in image and "html" not in image:
        p.add("text/html", "missing: the row needs a text or an html body")
    elif not (text or html) and not p.has("text", "html"):
        p.add("text/html", "the body is empty")
    elif not text and html and not p.has("html"):
        text = _derived_text(p, html)
    return text, html


def _check_as_sent(p: Problems, image: Image, fields: _Fields) -> None:
    """What the mail will be on the wire, ``insert_code`` filled in: header-safe values
    wherever they land, characters the row's encoding can carry, every part within the API's
    limits in that encoding. Measured by arithmetic (occurrences x value), never by building
    the mail: a row that would ask for gigabytes is refused at the cost of a count."""
    for name in _HEADER_FIELDS:
        value = string_attribute(image, name)
        problem = header_problem(value) if value is not None else None
        if problem is not None:
            p.add(name, problem)
    codec = "iso2022_jp" if fields.encode is Encode.ISO_2022_JP else "utf-8"
    subject = fields.subject or ""
    for key, value in fields.insert_code.items():
        problem = header_problem(value) if f"__{key}__" in subject else None
        if problem is not None:
            p.add("insert_code", f"value of {key!r} is filled into the subject and {problem}")
        elif codec != "utf-8" and not encodable(value, codec):
            p.add("insert_code", f"value of {key!r} has characters ISO-2022-JP cannot encode")
    _check_encodable(p, fields, codec)
    if subject and not p.has("subject", "insert_code"):
        chars = subject_length(subject, fields.insert_code)
        if chars > SUBJECT_CHARS[1]:
            p.add(
                "subject",
                f"is {chars} characters with insert_code filled in, over the limit of "
                f"{SUBJECT_CHARS[1]}",
            )
    bodies = (
        ("text", fields.text, TEXT_BYTES, fields.insert_code),
        ("html", fields.html, HTML_BYTES, fields.html_values),
    )
    for name, value, limit, values in bodies:
        if not value or p.has(name, "insert_code"):
            continue
        size = filled_size(value, values, codec)
        if size is not None and size > limit:
            what = "is" if name in image else "(the plain text derived from html) is"
            filled = " with insert_code filled in" if values else ""
            p.add(name, f"{what} {size:,} bytes as sent{filled}, over the API's limit of {limit:,}")


def _check_encodable(p: Problems, fields: _Fields, codec: str) -> None:
    """Every text of the mail in the row's encoding: a character it cannot carry is the
    row's problem, named, not an error deep in a provider's encoder."""
    if codec == "utf-8":
        return
    texts = {
        "subject": fields.subject,
        "from_name": fields.from_name,
        "reply_to_name": fields.reply_to_name,
        "text": fields.text,
        "html": fields.html,
    }
    for name, value in texts.items():
        if value and not p.has(name) and not encodable(value, codec):
            p.add(name, "has characters that ISO-2022-JP cannot encode")
    for attachment in fields.attachments:
        if attachment.filename and not encodable(attachment.filename, codec):
            p.add(
                "attachments",
                f"filename {clip(attachment.filename)!r} has characters ISO-2022-JP cannot encode",
            )


def subject_length(subject: str, values: Mapping[str, str]) -> int:
    """Characters of ``subject`` once each ``__key__`` is replaced by its value."""
    return len(subject) + sum(
        subject.count(f"__{key}__") * (len(value) - len(key) - 4) for key, value in values.items()
    )


#: Bytes an ISO-2022-JP insertion may add at most: the escape sequences into and out of
#: the JIS X 0208 set around it.
_ISO_2022_JP_SHIFTS = 6


def filled_size(part: str, values: Mapping[str, str], codec: str) -> int | None:
    """Bytes of ``part`` in ``codec`` once each ``__key__`` is replaced by its value (an
    upper bound for ISO-2022-JP, whose escapes depend on the neighbours); None if ``part``
    cannot be encoded."""
    size = encoded_size(part, codec)
    if size is None:
        return None
    for key, value in values.items():
        count = part.count(f"__{key}__")
        if count:
            value_size = encoded_size(value, codec) or len(value.encode("utf-8", "replace"))
            shifts = _ISO_2022_JP_SHIFTS if codec != "utf-8" else 0
            size += count * (value_size + shifts - len(key) - 4)
    return size


def _filled(part: str | None, values: Mapping[str, str]) -> str | None:
    """``part`` with the ``__key__`` placeholders of ``values`` replaced."""
    if not part or not values:
        return part
    codes = {f"__{key}__": value for key, value in values.items()}
    pattern = re.compile("|".join(re.escape(code) for code in codes))
    return pattern.sub(lambda m: codes[m.group()], part)


def _encode(p: Problems, image: Image) -> Encode | None:
    raw = p.string(image, "encode")
    if raw is None:
        return None
    try:
        return Encode(raw)
    except ValueError:
        allowed = ", ".join(e.value for e in Encode)
        p.add("encode", f"{clip(raw)!r} is not one of {allowed}")
        return None


def _attachments(p: Problems, image: Image) -> tuple[Attachment, ...]:
    if "attachments" not in image:
        return ()
    items = typed(image["attachments"], "L")
    if not isinstance(items, list):
        got = type_name(image["attachments"])
        p.add("attachments", f"must be a list of maps (L of M), got {got}")
        return ()
    if len(items) > ATTACHMENT_FILES:
        p.add("attachments", f"has {len(items)} files, over the API's {ATTACHMENT_FILES}")
        return ()
    out: list[Attachment] = []
    for index, item in enumerate(items):
        label = f"attachments[{index}]"
        entry = typed(item, "M")
        key = typed(entry.get("key"), "S") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not key.strip():
            p.add("attachments", f"{label} needs a key (S): the object's key in the bucket")
            continue
        raw_name = entry.get("filename") if isinstance(entry, dict) else None
        filename = typed(raw_name, "S") if raw_name is not None else key.rsplit("/", 1)[-1]
        problem = filename_problem(filename)
        if problem is not None:
            p.add("attachments", f"{label} {problem}")
            continue
        assert isinstance(filename, str)
        out.append(Attachment(key=key, filename=filename))
    return tuple(out)


def _derived_text(p: Problems, html: str) -> str | None:
    """The plain part for a row with only html (the API requires one)."""
    text = html_to_text(html)
    if not text.strip():
        p.add("html", "has no readable text for the plain-text part the API requires; add `text`")
        return None
    return text
