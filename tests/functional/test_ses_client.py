"""The SES client: the same message as blastengine's, in raw MIME, and SES's errors mapped
onto the same tree (an SES timeout is ambiguous exactly as blastengine's)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import replace
from email.header import decode_header, make_header
from io import BytesIO
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from dispatcher.model.message import Attachment, Encode, Message
from dispatcher.model.row import ErrorKind
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    InvalidMessageError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from dispatcher.providers.ses.client import (
    CONTENT_TAG,
    MAX_RECIPIENTS,
    ROW_TAG,
    SesClient,
    build_mime,
    client_config,
    row_digest,
)

MESSAGE = Message(
    id="r1",
    to="alice@example.com",
    subject="Hello __name__",
    from_email="shop@example.com",
    from_name="Shop",
    text="Hi __name__",
    html="<p>Hi __name__</p>",
    cc=("c@example.com",),
    bcc=("b@example.com",),
    reply_to="help@example.com",
    reply_to_name="Help desk",
    list_unsubscribe_url="https://example.com/unsubscribe?u=1",
    list_unsubscribe_mailto="mailto:unsubscribe@example.com",
    insert_code={"name": "Alice"},
    content_hash="c0ffee",
)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def header(raw: bytes, name: str) -> str:
    value = email.message_from_bytes(raw)[name]
    return str(make_header(decode_header(value)))


@pytest.fixture
def ses() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("sesv2", region_name="us-east-1", config=client_config(10.0))
        client.create_email_identity(EmailIdentity="shop@example.com")
        yield client


def sent_raw() -> list[Any]:
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


def test_a_mail_goes_out_through_ses_with_its_message_id(ses: Any) -> None:
    accepted = SesClient(client=ses).send(MESSAGE, timeout=10.0)

    assert accepted.delivery_id
    (sent,) = sent_raw()
    assert sent.id == accepted.delivery_id
    # bcc travels in the envelope only, never in a header
    assert "b@example.com" in sent.destinations
    assert "b@example.com" not in sent.raw_data


def test_the_mime_says_everything_the_row_asks_for() -> None:
    raw = build_mime(MESSAGE, lambda a: b"")
    mail = parse(raw)

    assert header(raw, "Subject") == "Hello Alice"  # insert_code filled, as blastengine does
    assert mail["From"].addresses[0].display_name == "Shop"
    assert mail["To"] == "alice@example.com"
    assert mail["Cc"] == "c@example.com"
    assert "Bcc" not in mail
    assert mail["Reply-To"].addresses[0].display_name == "Help desk"
    assert mail["List-Unsubscribe"] == (
        "<mailto:unsubscribe@example.com>, <https://example.com/unsubscribe?u=1>"
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert text.get_content().strip() == "Hi Alice"
    assert html is not None
    assert html.get_content().strip() == "<p>Hi Alice</p>"


def test_a_mailto_unsubscribe_alone_asks_for_no_one_click_post() -> None:
    message = replace(MESSAGE, list_unsubscribe_url=None)
    mail = parse(build_mime(message, lambda a: b""))

    assert mail["List-Unsubscribe"] == "<mailto:unsubscribe@example.com>"
    assert "List-Unsubscribe-Post" not in mail


def test_iso_2022_jp_bodies_are_7bit_and_headers_b_encoded_as_carriers_expect() -> None:
    message = replace(
        MESSAGE,
        subject="ご注文 __name__ 様",
        from_name="ショップ",
        text="ありがとうございます、__name__ 様",
        html=None,
        encode=Encode.ISO_2022_JP,
        insert_code={"name": "山田"},
    )
    raw = build_mime(message, lambda a: b"")

    raw.decode("ascii")  # nothing but 7-bit bytes on the wire
    mail = email.message_from_bytes(raw)
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "iso-2022-jp"
    assert mail["Content-Transfer-Encoding"] == "7bit"
    assert mail["Subject"].lower().startswith("=?iso-2022-jp?b?")
    assert header(raw, "Subject") == "ご注文 山田 様"
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert body.decode("iso-2022-jp") == "ありがとうございます、山田 様"


def test_attachments_travel_beside_the_bodies() -> None:
    files = {"a/report.pdf": b"%PDF-1.4 data", "a/notes.txt": "メモ".encode()}
    message = replace(
        MESSAGE,
        attachments=(
            Attachment(
                key="a/report.pdf",
                filename="report.pdf",
                size=13,
                etag="e",
                content_type="application/pdf",
            ),
            Attachment(
                key="a/notes.txt", filename="メモ.txt", size=6, etag="e", content_type="text/plain"
            ),
        ),
    )
    mail = parse(build_mime(message, lambda a: files[a.key]))

    assert mail.get_content_type() == "multipart/mixed"
    parts = list(mail.iter_attachments())
    assert [p.get_filename() for p in parts] == ["report.pdf", "メモ.txt"]
    assert [p.get_content_type() for p in parts] == ["application/pdf", "text/plain"]
    assert parts[0].get_payload(decode=True) == files["a/report.pdf"]
    assert parts[1].get_payload(decode=True) == files["a/notes.txt"]


def test_attachments_are_read_through_the_attachment_store(ses: Any) -> None:
    opened: list[str] = []

    def open_attachment(attachment: Attachment) -> BytesIO:
        opened.append(attachment.key)
        return BytesIO(b"data")

    message = replace(
        MESSAGE, attachments=(Attachment(key="k", filename="f.bin", size=4, etag="e"),)
    )
    SesClient(client=ses, open_attachment=open_attachment).send(message, timeout=10.0)

    assert opened == ["k"]


def test_every_message_carries_the_tags_its_events_come_back_with() -> None:
    client = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "send_email",
            {"MessageId": "m-1"},
            {
                "FromEmailAddress": "shop@example.com",
                "Destination": {
                    "ToAddresses": ["alice@example.com"],
                    "CcAddresses": ["c@example.com"],
                    "BccAddresses": ["b@example.com"],
                },
                "Content": {"Raw": {"Data": ANY}},
                "EmailTags": [
                    {"Name": ROW_TAG, "Value": row_digest("r1")},
                    {"Name": CONTENT_TAG, "Value": "c0ffee"},
                ],
                "ConfigurationSetName": "mail-events",
            },
        )
        accepted = SesClient(client=client, configuration_set="mail-events").send(
            MESSAGE, timeout=10.0
        )
    assert accepted.delivery_id == "m-1"


def test_over_ses_limits_fails_before_the_call() -> None:
    client = boto3.client("sesv2", region_name="us-east-1")
    many = tuple(f"cc{i}@example.com" for i in range(MAX_RECIPIENTS))
    # no response queued: a call would fail the test
    with Stubber(client), pytest.raises(InvalidMessageError, match="recipients"):
        SesClient(client=client).send(replace(MESSAGE, cc=many), timeout=10.0)


@pytest.mark.parametrize(
    ("code", "message", "status", "error", "kind"),
    [
        (
            "TooManyRequestsException",
            "Too many requests",
            429,
            RateLimitedError,
            ErrorKind.RATE_LIMITED,
        ),
        (
            "LimitExceededException",
            "Maximum sending rate exceeded.",
            400,
            RateLimitedError,
            ErrorKind.RATE_LIMITED,
        ),
        (
            "LimitExceededException",
            "Daily message quota exceeded.",
            400,
            ConfigError,
            ErrorKind.CONFIG,
        ),
        (
            "MessageRejected",
            "Email address is not verified.",
            400,
            RejectedError,
            ErrorKind.REJECTED,
        ),
        ("MailFromDomainNotVerifiedException", "not verified", 400, ConfigError, ErrorKind.CONFIG),
        ("AccountSuspendedException", "suspended", 400, ConfigError, ErrorKind.CONFIG),
        ("SendingPausedException", "paused", 400, ConfigError, ErrorKind.CONFIG),
        (
            "NotFoundException",
            "configuration set does not exist",
            404,
            ConfigError,
            ErrorKind.CONFIG,
        ),
        ("InternalFailure", "oops", 500, TransientError, ErrorKind.TRANSIENT),
        ("ServiceUnavailable", "later", 503, TransientError, ErrorKind.TRANSIENT),
    ],
)
def test_ses_errors_map_onto_the_error_tree(
    code: str, message: str, status: int, error: type, kind: ErrorKind
) -> None:
    client = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error(
            "send_email",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
        )
        with pytest.raises(error) as raised:
            SesClient(client=client).send(MESSAGE, timeout=10.0)
    assert raised.value.kind is kind
    assert code in str(raised.value)


class _Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def send_email(self, **_: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (
            EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"),
            TransientError,
        ),
        (ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), TransientError),
        (
            ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"),
            AmbiguousSendError,
        ),
    ],
)
def test_a_timeout_after_the_request_left_is_ambiguous_as_with_blastengine(
    exc: Exception, error: type
) -> None:
    with pytest.raises(error) as raised:
        SesClient(client=_Failing(exc)).send(MESSAGE, timeout=10.0)  # type: ignore[arg-type]
    assert type(raised.value) is error


def test_botocore_retries_nothing_itself() -> None:
    config = client_config(10.0)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.read_timeout == 10.0
