"""The one-click unsubscribe endpoint behind its Function URL: ``/u/{token}``.

- ``POST`` with RFC 8058's body (``List-Unsubscribe=One-Click``, form-encoded or multipart,
  as a mailbox provider sends it when a person presses its Unsubscribe button): the address
  is suppressed for the token's category, answered 200 with one line. A repeat changes
  nothing and is answered the same.
- ``GET``: a small page whose button POSTs that body. A GET never unsubscribes: mail
  scanners follow links.
- A token that is not the stack's, was altered or has expired: 404, nothing written. A body
  other than RFC 8058's: 400, nothing written; one over :data:`MAX_BODY_BYTES` is refused
  before it is read.

Each unsubscribe is a ``Mail Unsubscribed`` delivery event. Routing and the Function URL
event are Powertools' (``LambdaFunctionUrlResolver``).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response

from dispatcher.config.settings import Settings, SettingsError
from dispatcher.notify.delivery_events import DeliveryEvent, EventPublisher
from dispatcher.recipients.suppression import Suppression, SuppressionList
from dispatcher.recipients.unsubscribe_links import Unsubscribe, UnsubscribeLinks
from dispatcher.support.clock import iso_utc
from dispatcher.support.observability import logger

__all__ = ["MAX_BODY_BYTES", "ONE_CLICK", "app_from_settings", "unsubscribe_app"]

#: RFC 8058's one key and value.
ONE_CLICK = ("List-Unsubscribe", "One-Click")
#: A one-click body is 26 bytes; a multipart one a few hundred.
MAX_BODY_BYTES = 2048
#: The page a GET shows: nothing loads, nothing runs; its button POSTs the one-click body.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Unsubscribe</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1rem}}</style></head>
<body><h1>Unsubscribe</h1>
<p>Stop sending <strong>{category}</strong> mail to <strong>{address}</strong>?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>
<p>Mail you asked for (receipts, password resets) still comes.</p></body></html>
"""
_SECURITY = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def unsubscribe_app(
    links: UnsubscribeLinks, suppressions: SuppressionList, events: EventPublisher | None
) -> LambdaFunctionUrlResolver:
    app = LambdaFunctionUrlResolver()

    @app.get("/u/<token>")
    def page(token: str) -> Response[str]:
        asked = links.read(token)
        if asked is None:
            return _line(404, "not found")
        body = _PAGE.format(
            category=html.escape(asked.category), address=html.escape(asked.address)
        )
        return Response(200, "text/html; charset=utf-8", body, headers=_SECURITY)

    @app.post("/u/<token>")
    def one_click(token: str) -> Response[str]:
        asked = links.read(token)
        if asked is None:
            return _line(404, "not found")
        event = app.current_event
        length = int(event.headers.get("content-length") or 0)
        raw = b"" if length > MAX_BODY_BYTES else (event.decoded_body or "").encode()
        if length > MAX_BODY_BYTES or len(raw) > MAX_BODY_BYTES:
            return _line(413, f"the body is over {MAX_BODY_BYTES} bytes")
        if not _is_one_click(raw, event.headers.get("content-type") or ""):
            logger.warning("unsubscribe refused", extra={"reason": "not RFC 8058's body"})
            return _line(400, "the body must be List-Unsubscribe=One-Click (RFC 8058)")
        new = _unsubscribe(suppressions, asked)
        if new and events is not None:
            events.add([_event(asked)])
            events.flush()
        logger.info("unsubscribed", extra={"category": asked.category, "new": new})
        return _line(200, f"unsubscribed from {asked.category} mail")

    @app.not_found
    def unknown(_: Exception) -> Response[str]:
        return _line(404, "not found")

    return app


def _is_one_click(raw: bytes, content_type: str) -> bool:
    """Whether ``raw`` is RFC 8058's body, ``List-Unsubscribe=One-Click`` and nothing else,
    form-encoded or as multipart/form-data."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields.setdefault(name, []).append(payload.decode("utf-8", "replace"))
    else:
        try:
            fields = parse_qs(raw.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return False
    return fields == {ONE_CLICK[0]: [ONE_CLICK[1]]}


def _unsubscribe(suppressions: SuppressionList, asked: Unsubscribe) -> bool:
    """Suppress the address for the category; False if it already was (a repeat)."""
    entry = Suppression(
        address=asked.address,
        reason="UNSUBSCRIBE",
        added_at=iso_utc(datetime.now(UTC)),
        scope=asked.category,
        added_by="unsubscribe",
    )
    return suppressions.add_once(entry, happened_at=entry.added_at)


def _event(asked: Unsubscribe) -> DeliveryEvent:
    return DeliveryEvent(
        detail_type="Mail Unsubscribed",
        row_id="",
        at=iso_utc(datetime.now(UTC)),
        recipient=asked.address,
        category=asked.category,
        identity=(asked.address, asked.category),
    )


def _line(status: int, message: str) -> Response[str]:
    return Response(status, "application/json", json.dumps({"message": message}), _SECURITY)


def app_from_settings(settings: Settings, *, dynamodb_client: Any = None) -> Any:
    """The endpoint over the stack's suppression list, as the Lambda entry builds it."""
    import boto3

    links = UnsubscribeLinks.reader(settings)
    client = dynamodb_client or boto3.client("dynamodb")
    suppressions = SuppressionList.from_settings(settings, client)
    if suppressions is None:
        raise SettingsError("SUPPRESSION_TABLE_NAME is required")
    return unsubscribe_app(links, suppressions, EventPublisher.from_settings(settings))
