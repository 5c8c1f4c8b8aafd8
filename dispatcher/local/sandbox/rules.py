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
    problems: dict[str, list[str]] = {}

    def refuse(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    def address(name: str, value: Any) -> None:
        if not isinstance(value, str):
            refuse(name, "must be an email address")
            return
        low, high = ADDRESS_CHARS
        if not low <= len(value) <= high:
            refuse(name, f"must be {low} to {high} characters")
            return
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            refuse(name, "is not a valid email address")

    def person(name: str, value: Any, *, required: bool) -> None:
        if value is None and not required:
            return
        if not isinstance(value, dict):
            refuse(name, "must be an object {email, name}")
            return
        address(f"{name}.email", value.get("email"))
        display = value.get("name")
        if display is not None and (not isinstance(display, str) or len(display) > NAME_CHARS):
            refuse(f"{name}.name", f"must be a string of at most {NAME_CHARS} characters")

    person("from", body.get("from"), required=True)
    person("reply_to", body.get("reply_to"), required=False)
    address("to", body.get("to"))
    for name in ("cc", "bcc"):
        if name in body:
            items = body[name]
            if not isinstance(items, list) or len(items) > LIST_ADDRESSES:
                refuse(name, f"must be a list of at most {LIST_ADDRESSES} addresses")
            else:
                for n, item in enumerate(items):
                    address(f"{name}[{n}]", item)
    subject = body.get("subject")
    low, high = SUBJECT_CHARS
    if not isinstance(subject, str) or not low <= len(subject) <= high:
        refuse("subject", f"is required, {low} to {high} characters")
    encode = body.get("encode", "UTF-8")
    if encode not in ENCODINGS:
        refuse("encode", "must be UTF-8 or ISO-2022-JP")
    codec = ENCODINGS.get(encode, "utf-8")
    for name, limit, required in (
        ("text_part", TEXT_BYTES, True),
        ("html_part", HTML_BYTES, False),
    ):
        value = body.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value:
            refuse(name, "is required" if required else "must be a string")
            continue
        try:
            size = len(value.encode(codec))
        except UnicodeEncodeError:
            refuse(name, f"cannot be encoded as {encode}")
            continue
        if size > limit:
            refuse(name, f"must be at most {limit} bytes")
    codes = body.get("insert_code")
    if codes is not None:
        if not isinstance(codes, list) or len(codes) > INSERT_CODES:
            refuse("insert_code", f"must be a list of at most {INSERT_CODES} items")
        else:
            for n, item in enumerate(codes):
                key = item.get("key") if isinstance(item, dict) else None
                if not isinstance(key, str) or not _INSERT_KEY.fullmatch(key):
                    refuse(
                        f"insert_code[{n}].key",
                        "must be __name__ or %%name%%, name letters and digits",
                    )
                if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                    refuse(f"insert_code[{n}].value", "must be a string")
    unsubscribe = body.get("list_unsubscribe")
    if unsubscribe is not None:
        if not isinstance(unsubscribe, dict) or not (
            unsubscribe.get("url") or unsubscribe.get("mailto")
        ):
            refuse("list_unsubscribe", "needs a url or a mailto")
        else:
            for name, schemes in (("url", ("http://", "https://")), ("mailto", ("mailto:",))):
                value = unsubscribe.get(name)
                if value is None:
                    continue
                if not isinstance(value, str) or not value.startswith(schemes):
                    refuse(f"list_unsubscribe.{name}", f"must start with {' or '.join(schemes)}")
                elif len(value) > UNSUBSCRIBE_CHARS:
                    refuse(
                        f"list_unsubscribe.{name}",
                        f"must be at most {UNSUBSCRIBE_CHARS} characters",
                    )
    for n, attached in enumerate(files or []):
        filename = str(attached.get("filename", ""))
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if not filename:
            refuse(f"file[{n}]", "needs a filename")
        elif suffix in REFUSED_EXTENSIONS:
            refuse(f"file[{n}]", f"{suffix} files are not accepted")
    if files and len(files) > ATTACHMENT_FILES:
        refuse("file", f"at most {ATTACHMENT_FILES} files")
    if files and sum(int(f.get("size", 0)) for f in files) > attachment_limit:
        refuse("file", f"at most {attachment_limit} bytes in all")
    return problems


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
