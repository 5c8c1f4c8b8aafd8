"""What blastengine's transaction API accepts, as the sandbox checks it.

The limits are BLASTENGINE.md's, from :mod:`dispatcher.model.blastengine_limits`
(checked against the document's words by a test); the checks are the sandbox's own, written
as the API states them rather than as the client's parser does, so a mistake in the client's
checks is one the sandbox can catch, not one it shares. Refusals are in the API's error
shape, ``{field: [message, ...]}``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from dispatcher.model.blastengine_limits import (
    ADDRESS_CHARS,
    ATTACHMENT_BYTES,
    ATTACHMENT_FILES,
    ENCODINGS,
    HTML_BYTES,
    INSERT_CODE_NAME,
    INSERT_CODES,
    LIST_ADDRESSES,
    NAME_CHARS,
    REFUSED_EXTENSIONS,
    SUBJECT_CHARS,
    TEXT_BYTES,
    UNSUBSCRIBE_CHARS,
)

__all__ = ["Multipart", "validate_transaction"]

_INSERT_KEY = re.compile(rf"__{INSERT_CODE_NAME.pattern}__|%%{INSERT_CODE_NAME.pattern}%%")


def validate_transaction(
    body: Any,
    files: list[dict[str, Any]] | None = None,
    *,
    attachment_limit: int = ATTACHMENT_BYTES,
) -> dict[str, list[str]]:
    """The checks blastengine makes on a transaction request, in its error shape.

    ``files`` are a multipart request's attachments (``filename``, ``size``); their limits
    are from a third-party article (BLASTENGINE.md): 100 files, ``attachment_limit`` bytes in
    all (1 MB by default, the contract's), and a list of refused extensions.
    """
    if not isinstance(body, dict):
        return {"data" if files is not None else "body": ["must be a JSON object"]}
    check = _Refusals()
    check.person("from", body.get("from"), required=True)
    check.person("reply_to", body.get("reply_to"), required=False)
    check.address("to", body.get("to"))
    for name in ("cc", "bcc"):
        if name in body:
            check.address_list(name, body[name])
    check.subject(body.get("subject"))
    check.bodies(body)
    if body.get("insert_code") is not None:
        check.insert_codes(body["insert_code"])
    if body.get("list_unsubscribe") is not None:
        check.unsubscribe(body["list_unsubscribe"])
    check.files(files or [], attachment_limit)
    return check.problems


class _Refusals:
    """The problems of one request, by field, as each part of it is checked."""

    def __init__(self) -> None:
        self.problems: dict[str, list[str]] = {}

    def refuse(self, name: str, message: str) -> None:
        self.problems.setdefault(name, []).append(message)

    def address(self, name: str, value: Any) -> None:
        if not isinstance(value, str):
            self.refuse(name, "must be an email address")
            return
        low, high = ADDRESS_CHARS
        if not low <= len(value) <= high:
            self.refuse(name, f"must be {low} to {high} characters")
            return
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            self.refuse(name, "is not a valid email address")

    def person(self, name: str, value: Any, *, required: bool) -> None:
        if value is None and not required:
            return
        if not isinstance(value, dict):
            self.refuse(name, "must be an object {email, name}")
            return
        self.address(f"{name}.email", value.get("email"))
        display = value.get("name")
        if display is not None and (not isinstance(display, str) or len(display) > NAME_CHARS):
            self.refuse(f"{name}.name", f"must be a string of at most {NAME_CHARS} characters")

    def address_list(self, name: str, items: Any) -> None:
        if not isinstance(items, list) or len(items) > LIST_ADDRESSES:
            self.refuse(name, f"must be a list of at most {LIST_ADDRESSES} addresses")
            return
        for n, item in enumerate(items):
            self.address(f"{name}[{n}]", item)

    def subject(self, subject: Any) -> None:
        low, high = SUBJECT_CHARS
        if not isinstance(subject, str) or not low <= len(subject) <= high:
            self.refuse("subject", f"is required, {low} to {high} characters")

    def bodies(self, body: dict[str, Any]) -> None:
        """The text and html parts, measured in the request's encoding."""
        encode = body.get("encode", "UTF-8")
        if encode not in ENCODINGS:
            self.refuse("encode", "must be UTF-8 or ISO-2022-JP")
        codec = ENCODINGS.get(encode, "utf-8")
        for name, limit, required in (
            ("text_part", TEXT_BYTES, True),
            ("html_part", HTML_BYTES, False),
        ):
            value = body.get(name)
            if value is None and not required:
                continue
            if not isinstance(value, str) or not value:
                self.refuse(name, "is required" if required else "must be a string")
                continue
            try:
                size = len(value.encode(codec))
            except UnicodeEncodeError:
                self.refuse(name, f"cannot be encoded as {encode}")
                continue
            if size > limit:
                self.refuse(name, f"must be at most {limit} bytes")

    def insert_codes(self, codes: Any) -> None:
        if not isinstance(codes, list) or len(codes) > INSERT_CODES:
            self.refuse("insert_code", f"must be a list of at most {INSERT_CODES} items")
            return
        for n, item in enumerate(codes):
            key = item.get("key") if isinstance(item, dict) else None
            if not isinstance(key, str) or not _INSERT_KEY.fullmatch(key):
                self.refuse(
                    f"insert_code[{n}].key",
                    "must be __name__ or %%name%%, name letters and digits",
                )
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                self.refuse(f"insert_code[{n}].value", "must be a string")

    def unsubscribe(self, unsubscribe: Any) -> None:
        if not isinstance(unsubscribe, dict) or not (
            unsubscribe.get("url") or unsubscribe.get("mailto")
        ):
            self.refuse("list_unsubscribe", "needs a url or a mailto")
            return
        for name, schemes in (("url", ("http://", "https://")), ("mailto", ("mailto:",))):
            value = unsubscribe.get(name)
            field = f"list_unsubscribe.{name}"
            if value is None:
                continue
            if not isinstance(value, str) or not value.startswith(schemes):
                self.refuse(field, f"must start with {' or '.join(schemes)}")
            elif len(value) > UNSUBSCRIBE_CHARS:
                self.refuse(field, f"must be at most {UNSUBSCRIBE_CHARS} characters")

    def files(self, files: list[dict[str, Any]], attachment_limit: int) -> None:
        for n, attached in enumerate(files):
            filename = str(attached.get("filename", ""))
            suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
            if not filename:
                self.refuse(f"file[{n}]", "needs a filename")
            elif suffix in REFUSED_EXTENSIONS:
                self.refuse(f"file[{n}]", f"{suffix} files are not accepted")
        if len(files) > ATTACHMENT_FILES:
            self.refuse("file", f"at most {ATTACHMENT_FILES} files")
        if files and sum(int(f.get("size", 0)) for f in files) > attachment_limit:
            self.refuse("file", f"at most {attachment_limit} bytes in all")


@dataclass(frozen=True)
class Multipart:
    """A ``multipart/form-data`` request: the JSON of its ``data`` part, and its files."""

    data: Any
    files: list[dict[str, Any]]

    @classmethod
    def parse(cls, content_type: str, raw: bytes) -> Multipart:
        document = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        data: Any = None
        files: list[dict[str, Any]] = []
        for part in document.iter_parts() if document.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            payload = payload if isinstance(payload, bytes) else b""
            if name == "data":
                try:
                    data = json.loads(payload)
                except ValueError:
                    data = None
            elif name == "file":
                files.append(
                    {
                        "filename": part.get_filename() or "",
                        "size": len(payload),
                        "content_type": part.get_content_type(),
                    }
                )
        return cls(data, files)
