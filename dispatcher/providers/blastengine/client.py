"""The blastengine transaction API client, over one keep-alive httpx client.

One request per :meth:`BlastengineClient.send`; pacing and retries are the caller's
(:mod:`dispatcher.pacing.retry`). Every httpx exception is translated into the provider error tree,
and no error text ever contains the bearer token or the API key it is derived from.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from dispatcher.model.message import Attachment, Message
from dispatcher.providers._http import parse_rate_window, parse_retry_after
from dispatcher.providers.base import Accepted
from dispatcher.providers.blastengine.wire import InsertCode, TransactionRequest
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    ProviderError,
    TransientError,
    building,
    error_for_status,
)

if TYPE_CHECKING:
    from dispatcher.providers.blastengine.credentials import Credentials

__all__ = ["BlastengineClient", "bearer_token", "build_request", "describe_errors"]

TRANSACTION_PATH = "/deliveries/transaction"
USER_AGENT = "mail-dispatcher/0.1 (+blastengine)"


def bearer_token(login_id: str, api_key: str) -> str:
    """blastengine's token: base64 of the lowercase hex SHA-256 of login id + API key."""
    digest = hashlib.sha256(f"{login_id}{api_key}".encode()).hexdigest().lower()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def build_request(message: Message) -> TransactionRequest:
    """The JSON body for one message, which :func:`~dispatcher.model.message.parse_message` has
    already held to everything the API accepts."""
    sender: dict[str, str] = {"email": message.from_email}
    if message.from_name:
        sender["name"] = message.from_name
    body: dict[str, Any] = {
        "from": sender,
        "to": message.to,
        "subject": message.subject,
        "encode": message.encode.value,
        "text_part": message.text,
    }
    if message.reply_to:
        body["reply_to"] = {"email": message.reply_to}
        if message.reply_to_name:
            body["reply_to"]["name"] = message.reply_to_name
    unsubscribe = {
        k: v
        for k, v in (
            ("url", message.list_unsubscribe_url),
            ("mailto", message.list_unsubscribe_mailto),
        )
        if v
    }
    if unsubscribe:
        body["list_unsubscribe"] = unsubscribe
    if message.html:
        body["html_part"] = message.html
    if message.cc:
        body["cc"] = list(message.cc)
    if message.bcc:
        body["bcc"] = list(message.bcc)
    if message.insert_code:
        codes: list[InsertCode] = [
            {"key": f"__{key}__", "value": value} for key, value in message.insert_code.items()
        ]
        body["insert_code"] = codes
    return body  # type: ignore[return-value]


def describe_errors(body: object) -> str:
    """``{"error_messages": {field: [msg, ...]}}`` as ``"field: msg; field: msg"``."""
    if not isinstance(body, Mapping):
        return ""
    errors = body.get("error_messages")
    if not isinstance(errors, Mapping):
        return ""
    parts: list[str] = []
    for field, messages in errors.items():
        for item in messages if isinstance(messages, list) else [messages]:
            parts.append(f"{field}: {item}")
    return "; ".join(parts)


class BlastengineClient:
    """Sends transactional mail through blastengine.

    Parameters
    ----------
    base_url:
        API root, e.g. ``https://app.engn.jp/api/v1`` (or the local sandbox).
    credentials:
        Called before each request; cheap, since the loader caches (see
        :mod:`dispatcher.providers.blastengine.credentials`).
    http_client:
        Injected in tests; by default one client with a pool sized for ``max_connections``
        that lives as long as the Lambda container, so warm invocations keep their
        connections.
    open_attachment:
        Opens one resolved attachment as a stream (:meth:`Attachments.open
        <dispatcher.providers.attachments.Attachments.open>`); called anew for each request, so a
        retry streams each file again from its start.
    """

    name = "blastengine"

    def __init__(
        self,
        *,
        base_url: str,
        credentials: Callable[[], Credentials],
        http_client: httpx.Client | None = None,
        max_connections: int = 10,
        open_attachment: Callable[[Attachment], BinaryIO] | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + TRANSACTION_PATH
        self._credentials = credentials
        self._open_attachment = open_attachment
        self._http = http_client or httpx.Client(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": USER_AGENT},
        )

    def send(self, message: Message, *, timeout: float) -> Accepted:
        with building("blastengine"):
            body = build_request(message)
        headers = self._authorization()
        streams: list[BinaryIO] = []
        try:
            if message.attachments:
                # The API's multipart shape: the JSON as a part `data`, a part `file` each.
                files: list[tuple[str, Any]] = [
                    ("data", ("data.json", json.dumps(body).encode(), "application/json"))
                ]
                for attachment in message.attachments:
                    streams.append(self._open(attachment))
                    files.append(
                        ("file", (attachment.filename, streams[-1], attachment.content_type))
                    )
                response = self._http.post(self._url, files=files, headers=headers, timeout=timeout)
            else:
                response = self._http.post(self._url, json=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            # Deliberately `from None`: httpx errors carry the request, and with it the token.
            raise _transport_error(exc, timeout) from None
        finally:
            for stream in streams:
                stream.close()
        return self._delivery_id(response)  # or raises the answer's error

    def _authorization(self) -> dict[str, str]:
        creds = self._credentials()
        return {"Authorization": f"Bearer {bearer_token(creds.login_id, creds.api_key)}"}

    def _open(self, attachment: Attachment) -> BinaryIO:
        if self._open_attachment is None:
            raise ConfigError("attachments: this client was built without an attachment store")
        return self._open_attachment(attachment)

    def delivery(self, delivery_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """``GET /deliveries/{id}``: one delivery's status and counts, as blastengine has them
        now (the history item alone cannot say whether the mail arrived)."""
        payload = self._get(f"/deliveries/{delivery_id}", None, timeout)
        if not isinstance(payload, dict):
            raise TransientError("blastengine answered a delivery lookup with no object")
        return payload

    def mail_results(
        self, params: list[tuple[str, str]], *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """One page of ``GET /logs/mails/results`` (per-recipient results), filtered by
        ``params`` (``delivery_start``, ``status[]``, ``count``, ``anchor``...)."""
        payload = self._get("/logs/mails/results", params, timeout)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise TransientError("blastengine answered the results lookup with no data list")
        return [r for r in data if isinstance(r, dict)]

    def _get(self, path: str, params: list[tuple[str, str]] | None, timeout: float) -> Any:
        headers = self._authorization()
        url = self._url.removesuffix(TRANSACTION_PATH) + path
        try:
            response = self._http.get(
                url, params=tuple(params or ()), headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"cannot reach blastengine ({type(exc).__name__})") from None
        payload = _json(response)
        if response.is_success:
            return payload
        detail = describe_errors(payload) or response.reason_phrase
        raise error_for_status(response.status_code, detail)

    def close(self) -> None:
        self._http.close()

    def _delivery_id(self, response: httpx.Response) -> Accepted:
        payload = _json(response)
        remaining, resets_in = parse_rate_window(response.headers)
        if response.is_success:
            delivery_id = payload.get("delivery_id") if isinstance(payload, dict) else None
            # Accepted is accepted: never resend because the body was unexpected.
            return Accepted(
                str(delivery_id) if delivery_id is not None else None,
                remaining=remaining,
                window_resets_in=resets_in,
            )
        detail = describe_errors(payload) or response.reason_phrase
        # A 429 waits for the window to refill: blastengine says when in its own header, a
        # proxy in front of it may say so in Retry-After; the longer of the two holds.
        header = parse_retry_after(response.headers.get("Retry-After"))
        known = [w for w in (resets_in, header) if w is not None]
        error: ProviderError = error_for_status(
            response.status_code, detail, retry_after=max(known) if known else None
        )
        raise error


#: Failures before the request was whole on the wire: blastengine cannot have taken it.
_NEVER_LEFT = (
    httpx.ConnectError,  # refused, DNS, TLS handshake
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,  # the body did not all leave: no server acts on half a request
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
#: Failures after it was written, while waiting for or reading the answer: it may have been.
_MAYBE_TAKEN = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def _transport_error(exc: httpx.HTTPError, timeout: float) -> ProviderError:
    """Tell "the request never left" (retried) from "it may have been taken" (settled by
    look-up, never retried blindly): the one decision ``DESIGN.md``, "When the provider's
    answer never came", rests on. A kind httpx may add later counts as the second: a
    look-up costs a little, a duplicate mail cannot be taken back."""
    name = type(exc).__name__
    if isinstance(exc, _NEVER_LEFT):
        return TransientError(f"cannot reach blastengine ({name})")
    if isinstance(exc, httpx.ReadTimeout):
        return AmbiguousSendError(f"no answer from blastengine within {timeout:.1f}s ({name})")
    if isinstance(exc, _MAYBE_TAKEN):
        return AmbiguousSendError(f"the connection broke before blastengine answered ({name})")
    return AmbiguousSendError(f"blastengine's answer was lost ({name})")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
