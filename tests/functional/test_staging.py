"""Staging safety: RECIPIENT_ALLOWLIST blocks or leaves out, REDIRECT_ALL_TO sends every mail
to one address, keeping who it was for."""

from __future__ import annotations

import email

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from dispatcher.config.settings import SettingsError
from dispatcher.providers.ses.client import ORIGINAL_RECIPIENTS_HEADER, client_config
from tests.conftest import row
from tests.functional.conftest import attr, insert


def test_a_recipient_outside_the_allowlist_blocks_the_row_before_any_call(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    dispatcher = make_dispatcher(recipient_allowlist="@staging.example.com qa@example.org")

    invoke(dispatcher, insert(table, stream_record, row("st-1", to="customer@example.com")))

    current = table.get("st-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "blocked")
    assert "customer@example.com is outside RECIPIENT_ALLOWLIST" in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_allowed_recipients_are_sent_and_a_cc_outside_is_left_out_and_named(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    dispatcher = make_dispatcher(recipient_allowlist="@staging.example.com, QA@example.org")
    values = row(
        "st-2",
        to="dev@Staging.example.com",
        cc=["qa@example.org", "boss@example.com"],
        bcc=["audit@example.com"],
    )

    invoke(dispatcher, insert(table, stream_record, values))

    [payload] = blastengine.payloads
    assert payload["to"].lower() == "dev@staging.example.com"
    assert payload["cc"] == ["qa@example.org"]
    assert "bcc" not in payload
    (item,) = table.history("st-2")
    left = [v["S"] for v in item["suppressed_recipients"]["L"]]
    assert sorted(left) == ["audit@example.com", "boss@example.com"]


def test_redirect_all_to_sends_to_one_address_and_keeps_the_original_recipients(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    dispatcher = make_dispatcher(redirect_all_to="inbox@staging.example.com")
    values = row("st-3", to="customer@example.com", cc=["c@example.com"], bcc=["b@example.com"])

    invoke(dispatcher, insert(table, stream_record, values))

    [payload] = blastengine.payloads
    assert payload["to"] == "inbox@staging.example.com"
    assert "cc" not in payload
    assert "bcc" not in payload
    (item,) = table.history("st-3")
    assert [v["S"] for v in item["original_recipients"]["L"]] == [
        "customer@example.com",
        "c@example.com",
        "b@example.com",
    ]


def test_through_ses_the_original_recipients_travel_in_a_header(
    make_dispatcher, table, stream_record, invoke, dynamodb
) -> None:
    ses = boto3.client("sesv2", region_name="us-east-1", config=client_config(5.0))
    ses.create_email_identity(EmailIdentity="example.com")
    dispatcher = make_dispatcher(
        mail_provider="ses", ses_client=ses, redirect_all_to="inbox@example.com"
    )

    invoke(dispatcher, insert(table, stream_record, row("st-4", to="customer@example.org")))

    (sent,) = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    mail = email.message_from_string(sent.raw_data)
    assert mail["To"] == "inbox@example.com"
    assert mail[ORIGINAL_RECIPIENTS_HEADER] == "customer@example.org"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECIPIENT_ALLOWLIST": "qa@example.org, staging.example.com"}, "'staging.example.com'"),
        ({"REDIRECT_ALL_TO": "nobody"}, "REDIRECT_ALL_TO is not a valid address"),
        (
            {"RECIPIENT_ALLOWLIST": "@staging.example.com", "REDIRECT_ALL_TO": "me@example.com"},
            "REDIRECT_ALL_TO (me@example.com) is outside RECIPIENT_ALLOWLIST",
        ),
    ],
)
def test_a_bad_safety_setting_stops_the_function_at_start_naming_it(
    make_dispatcher, env: dict[str, str], message: str
) -> None:
    overrides = {k.lower(): v for k, v in env.items()}
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_dispatcher(**overrides)
