"""The Amazon SES (v2) client: the same message as blastengine's, as raw MIME.

One ``SendEmail`` per :meth:`SesClient.send`; pacing and retries are the caller's
(:mod:`dispatcher.pacing.retry`), so botocore's own retries are off: a retry botocore made after a
read timeout would be a blind resend of a mail SES may have taken.

Always raw content: only raw MIME can carry ``List-Unsubscribe``/``List-Unsubscribe-Post``,
the ISO-2022-JP bodies and headers Japanese carriers expect, and the attachments, so every
mail takes one path. ``insert_code`` is substituted here (SES has no such feature), as
blastengine substitutes ``__name__`` in the subject and both bodies.

Every SES message carries two tags, the row's id digest and its content hash, which SES puts
on each event it publishes (``Send`` included): that is how a send whose answer never came is
settled (:mod:`dispatcher.providers.ses.lookup`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from dispatcher.model.message import Attachment, Encode, Message
from dispatcher.providers.base import Accepted
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    InvalidMessageError,
    ProviderError,
    RateLimitedError,
    RejectedError,
    TransientError,
    building,
)

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

__all__ = [
    "CONTENT_TAG",
    "MAX_MESSAGE_BYTES",
    "MAX_RECIPIENTS",
    "ROW_TAG",
    "SesClient",
    "build_mime",
    "row_digest",
]

#: SES v2's largest message, attachments and encoding included.
MAX_MESSAGE_BYTES = 40 * 1024 * 1024
#: Recipients (to, cc and bcc together) SES takes in one message.
MAX_RECIPIENTS = 50
#: The message tags every event SES publishes for the mail carries back.
ROW_TAG = "dispatcher-row"
CONTENT_TAG = "dispatcher-content"

#: Error codes, per the SES v2 API reference, and what they mean for the row.
_RATE_LIMITED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_CONFIG = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
}
_REJECTED = {"MessageRejected", "BadRequestException"}
_TRANSIENT = {"InternalFailure", "InternalServerError", "ServiceUnavailable"}
#: Who a redirected mail was for (staging's REDIRECT_ALL_TO); blastengine takes no such header.
ORIGINAL_RECIPIENTS_HEADER = "X-Dispatcher-Original-Recipients"
#: A daily quota or a per-second rate: SES says which in the message.
_LIMIT_EXCEEDED = "LimitExceededException"


def row_digest(row_id: str) -> str:
    """The row id as a tag value (SES tags take only letters, digits, ``_-.@``)."""
    return hashlib.sha256(row_id.encode()).hexdigest()[:40]


def client_config(timeout: float) -> Config:
    """botocore retries nothing (:mod:`dispatcher.pacing.retry` does, knowing what is safe)."""
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=min(timeout, 5.0),
        read_timeout=timeout,
    )


class SesClient:
    """Sends through Amazon SES with ``SendEmail`` (raw content).

    Parameters
    ----------
    client:
        A ``sesv2`` client built with :func:`client_config` (no retries of its own).
    configuration_set:
        Names the configuration set whose event destination publishes sends, bounces and
        complaints; None sends without one (no bounces then, no look-up either).
    open_attachment:
        Opens one resolved attachment (:meth:`Attachments.open
        <dispatcher.providers.attachments.Attachments.open>`).
    """

    name = "ses"

    def __init__(
        self,
        *,
        client: SESV2Client,
        configuration_set: str | None = None,
        open_attachment: Callable[[Attachment], BinaryIO] | None = None,
    ) -> None:
        self._client = client
        self._configuration_set = configuration_set
        self._open_attachment = open_attachment

    def send(self, message: Message, *, timeout: float) -> Accepted:
        # SES's limits hold before the call: an over-limit mail is this row's fault, not SES's.
        recipients = len(message.recipients)
        if recipients > MAX_RECIPIENTS:
            raise InvalidMessageError(
                f"{recipients} recipients: SES takes at most {MAX_RECIPIENTS} per message"
            )
        with building("SES"):
            raw = build_mime(message, self._attachment_bytes)
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidMessageError(
                f"the message is {len(raw):,} bytes as MIME, over SES's {MAX_MESSAGE_BYTES:,}"
            )
        destination: dict[str, list[str]] = {"ToAddresses": [message.to]}
        if message.cc:
            destination["CcAddresses"] = list(message.cc)
        if message.bcc:
            destination["BccAddresses"] = list(message.bcc)
        request: dict[str, Any] = {
            "FromEmailAddress": message.from_email,
            "Destination": destination,
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [
                {"Name": ROW_TAG, "Value": row_digest(message.id)},
                {"Name": CONTENT_TAG, "Value": message.content_hash or "none"},
            ],
        }
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        try:
            answer = self._client.send_email(**request)
        except ClientError as exc:
            raise client_error(exc) from None
        except BotoCoreError as exc:
            raise transport_error(exc, timeout) from None
        return Accepted(answer.get("MessageId"))

    def _attachment_bytes(self, attachment: Attachment) -> bytes:
        if self._open_attachment is None:
            raise ConfigError("attachments: this client was built without an attachment store")
        stream = self._open_attachment(attachment)
        try:
            return stream.read()
        finally:
            stream.close()


def client_error(exc: ClientError) -> ProviderError:
    """SES's answer, onto the error tree (``DESIGN.md``, "Sending", step 3)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    detail = str(error.get("Message", "")) or code
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = f"SES {code}: {detail}"
    if code in _RATE_LIMITED or (code == _LIMIT_EXCEEDED and "rate" in detail.lower()):
        # "Maximum sending rate exceeded": a second's wait, as the rate is per second.
        return RateLimitedError(text, http_status=status, retry_after=1.0)
    if code == _LIMIT_EXCEEDED:
        # The daily quota: nothing goes out through SES until its 24-hour window moves.
        return ConfigError(f"{text} (the account's daily sending quota)", http_status=status)
    if code in _CONFIG:
        return ConfigError(f"{text} (check the SES identity and the account)", http_status=status)
    if code in _REJECTED:
        return RejectedError(text, http_status=status)
    if code in _TRANSIENT or (isinstance(status, int) and status >= 500):
        return TransientError(text, http_status=status)
    if isinstance(status, int) and 400 <= status < 500:
        return RejectedError(text, http_status=status)
    return TransientError(text, http_status=status)


def transport_error(exc: BotoCoreError, timeout: float) -> ProviderError:
    """Never left (retried) or may have been taken (settled by look-up), as for blastengine."""
    name = type(exc).__name__
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return TransientError(f"cannot reach SES ({name})")
    if isinstance(exc, ReadTimeoutError):
        return AmbiguousSendError(f"no answer from SES within {timeout:.1f}s ({name})")
    return AmbiguousSendError(f"SES's answer was lost ({name})")


def build_mime(message: Message, read: Callable[[Attachment], bytes]) -> bytes:
    """The message as SES sends it: ``insert_code`` substituted, text and HTML as
    alternatives, attachments beside them, in the row's ``encode``."""
    filled = message.filled()
    charset = _charset(message.encode)
    body: MIMEText | MIMEMultipart = _text(filled.text, "plain", charset)
    if filled.html is not None:
        alternative = MIMEMultipart("alternative")
        alternative.attach(body)
        alternative.attach(_text(filled.html, "html", charset))
        body = alternative
    if message.attachments:
        mixed = MIMEMultipart("mixed")
        mixed.attach(body)
        for attachment in message.attachments:
            mixed.attach(_attachment(attachment, read(attachment), charset))
        root: MIMEText | MIMEMultipart = mixed
    else:
        root = body
    root["From"] = _address(message.from_email, message.from_name, charset)
    root["To"] = message.to
    if message.cc:
        root["Cc"] = ", ".join(message.cc)
    if message.reply_to:
        root["Reply-To"] = _address(message.reply_to, message.reply_to_name, charset)
    root["Subject"] = Header(filled.subject, charset).encode()
    if message.original_recipients:  # a staging deployment's REDIRECT_ALL_TO
        root[ORIGINAL_RECIPIENTS_HEADER] = ", ".join(message.original_recipients)
    root["Date"] = formatdate(localtime=False, usegmt=True)
    root["Message-ID"] = make_msgid(domain=message.from_email.rpartition("@")[2] or None)
    unsubscribe = [
        f"<{uri}>" for uri in (message.list_unsubscribe_mailto, message.list_unsubscribe_url) if uri
    ]
    if unsubscribe:
        root["List-Unsubscribe"] = ", ".join(unsubscribe)
        if message.list_unsubscribe_url:
            # One-click unsubscribe (RFC 8058), as Gmail and Yahoo ask of bulk senders.
            root["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return root.as_bytes()


def _charset(encode: Encode) -> Charset:
    if encode is Encode.ISO_2022_JP:
        # 7bit bodies and B-encoded headers in ISO-2022-JP, as carriers' phones read them.
        return Charset("iso-2022-jp")
    charset = Charset("utf-8")
    charset.header_encoding = BASE64
    charset.body_encoding = QP
    return charset


def _text(content: str, subtype: str, charset: Charset) -> MIMEText:
    return MIMEText(content, subtype, charset)  # type: ignore[arg-type]


def _address(email: str, name: str, charset: Charset) -> str:
    return formataddr((name, email), charset=charset) if name else email


def _attachment(attachment: Attachment, data: bytes, charset: Charset) -> MIMENonMultipart:
    maintype, _, subtype = attachment.content_type.partition("/")
    part: MIMENonMultipart
    if maintype == "application" or not subtype:
        part = MIMEApplication(data, subtype or "octet-stream")
    else:
        part = MIMEApplication(data)
        part.replace_header("Content-Type", attachment.content_type)
    name = attachment.filename
    if name.isascii():
        part.add_header("Content-Disposition", "attachment", filename=name)
    else:
        part.add_header(
            "Content-Disposition", "attachment", filename=(str(charset.input_charset), "", name)
        )
    return part
