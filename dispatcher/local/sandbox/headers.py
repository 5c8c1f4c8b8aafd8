"""The header fields a mail the sandbox took would carry, from its transaction request.

Only what the request states: ``From``, ``To``, ``Cc``, ``Reply-To``, ``Subject``, and
``List-Unsubscribe`` from ``list_unsubscribe`` (its ``mailto`` and ``url``, each in angle
brackets, RFC 2369). Whether blastengine also writes ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058) for an https ``url`` is not in the API reference the
sandbox follows, so the sandbox says so rather than guess; Amazon SES mail carries it (the
dispatcher writes it into the raw message).
"""

from __future__ import annotations

from email.headerregistry import Address
from typing import Any

__all__ = ["UNSTATED", "header_fields"]

#: What the sandbox shows for a field the API reference does not settle.
UNSTATED = "(not stated by blastengine's API reference)"


def header_fields(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's header fields, in the order a mail would carry them."""
    fields: list[tuple[str, str]] = []
    sender = payload.get("from") or {}
    if isinstance(sender, dict) and sender.get("email"):
        fields.append(("From", _address(sender.get("name") or "", str(sender["email"]))))
    if payload.get("to"):
        fields.append(("To", str(payload["to"])))
    if payload.get("cc"):
        fields.append(("Cc", ", ".join(map(str, payload["cc"]))))
    reply = payload.get("reply_to") or {}
    if isinstance(reply, dict) and reply.get("email"):
        fields.append(("Reply-To", _address(reply.get("name") or "", str(reply["email"]))))
    fields.append(("Subject", str(payload.get("subject", ""))))
    unsubscribe = payload.get("list_unsubscribe") or {}
    if isinstance(unsubscribe, dict):
        uris = [f"<{unsubscribe[k]}>" for k in ("mailto", "url") if unsubscribe.get(k)]
        if uris:
            fields.append(("List-Unsubscribe", ", ".join(uris)))
            if str(unsubscribe.get("url", "")).lower().startswith("https://"):
                fields.append(("List-Unsubscribe-Post", UNSTATED))
    return fields


def _address(name: str, email: str) -> str:
    try:
        return str(Address(display_name=name, addr_spec=email)) if name else email
    except (ValueError, IndexError):
        return f"{name} <{email}>" if name else email
