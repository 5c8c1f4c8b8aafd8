"""What blastengine's transaction API accepts, as the sandbox checks it.

The limits come from the provider's API reference as ``../shared/BLASTENGINE.md`` records
them, written down here on their own rather than imported from the client: the sandbox
answers to the real API, so a mistake in the client's checks is one it can catch, not one
it shares. Refusals are in the API's error shape, ``{field: [message, ...]}``.
"""

from __future__ import annotations

import re
from typing import Any

from email_validator import EmailNotValidError, validate_email

__all__ = ["validate_transaction"]

_ADDRESS_LENGTH = (6, 254)
_NAME_CHARS = 50
_SUBJECT_CHARS = (1, 256)
_TEXT_BYTES = 30_000
_HTML_BYTES = 70_000
_LIST_LIMIT = 10
_INSERT_CODES = 50
_INSERT_KEY = re.compile(r"^(__[A-Za-z0-9]+__|%%[A-Za-z0-9]+%%)$")
_UNSUBSCRIBE_CHARS = 450
_ENCODINGS = {"UTF-8": "utf-8", "ISO-2022-JP": "iso2022_jp"}
_FILES = 100
_REFUSED_EXTENSIONS = frozenset(
    {
        ".ade", ".adp", ".apk", ".appx", ".appxbundle", ".bat", ".bz2", ".cab", ".chm", ".cmd",
        ".com", ".cpl", ".dll", ".dmg", ".ex", ".ex_", ".exe", ".gz", ".hta", ".ins", ".isp",
        ".iso", ".jar", ".js", ".jse", ".lib", ".lnk", ".mde", ".msc", ".msi", ".msix",
        ".msixbundle", ".msp", ".mst", ".nsh", ".pif", ".ps1", ".scr", ".sct", ".shb", ".sys",
        ".tgz", ".vb", ".vbe", ".vbs", ".vxd", ".wsc", ".wsf", ".wsh", ".zip",
    }
)  # fmt: skip


def validate_transaction(
    body: Any, files: list[dict[str, Any]] | None = None, *, attachment_limit: int = 1_000_000
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
        low, high = _ADDRESS_LENGTH
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
        if display is not None and (not isinstance(display, str) or len(display) > _NAME_CHARS):
            refuse(f"{name}.name", f"must be a string of at most {_NAME_CHARS} characters")

    person("from", body.get("from"), required=True)
    person("reply_to", body.get("reply_to"), required=False)
    address("to", body.get("to"))
    for name in ("cc", "bcc"):
        if name in body:
            items = body[name]
            if not isinstance(items, list) or len(items) > _LIST_LIMIT:
                refuse(name, f"must be a list of at most {_LIST_LIMIT} addresses")
            else:
                for n, item in enumerate(items):
                    address(f"{name}[{n}]", item)
    subject = body.get("subject")
    low, high = _SUBJECT_CHARS
    if not isinstance(subject, str) or not low <= len(subject) <= high:
        refuse("subject", f"is required, {low} to {high} characters")
    encode = body.get("encode", "UTF-8")
    if encode not in _ENCODINGS:
        refuse("encode", "must be UTF-8 or ISO-2022-JP")
    codec = _ENCODINGS.get(encode, "utf-8")
    for name, limit, required in (
        ("text_part", _TEXT_BYTES, True),
        ("html_part", _HTML_BYTES, False),
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
        if not isinstance(codes, list) or len(codes) > _INSERT_CODES:
            refuse("insert_code", f"must be a list of at most {_INSERT_CODES} items")
        else:
            for n, item in enumerate(codes):
                key = item.get("key") if isinstance(item, dict) else None
                if not isinstance(key, str) or not _INSERT_KEY.match(key):
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
                elif len(value) > _UNSUBSCRIBE_CHARS:
                    refuse(
                        f"list_unsubscribe.{name}",
                        f"must be at most {_UNSUBSCRIBE_CHARS} characters",
                    )
    for n, attached in enumerate(files or []):
        filename = str(attached.get("filename", ""))
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if not filename:
            refuse(f"file[{n}]", "needs a filename")
        elif suffix in _REFUSED_EXTENSIONS:
            refuse(f"file[{n}]", f"{suffix} files are not accepted")
    if files and len(files) > _FILES:
        refuse("file", f"at most {_FILES} files")
    if files and sum(int(f.get("size", 0)) for f in files) > attachment_limit:
        refuse("file", f"at most {attachment_limit} bytes in all")
    return problems
