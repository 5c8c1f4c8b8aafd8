"""Two providers: SES as the deployment's or a row's, and failover that never sends a mail
twice (docs/concepts/providers.md)."""

from __future__ import annotations

import email
from typing import Any

import boto3
import httpx
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from dispatcher.model.message import Message
from dispatcher.model.unsettled import Unsettled
from dispatcher.providers.base import Accepted
from dispatcher.providers.errors import AmbiguousSendError, RejectedError, TransientError
from dispatcher.providers.ses.client import client_config
from dispatcher.support.observability import metrics
from tests.conftest import TABLE_NAMES, row
from tests.functional.conftest import attr, failed_ids, insert


class Scripted:
    """A provider named ``name`` that answers from a script (exceptions raise), then takes
    every mail."""

    def __init__(self, name: str, *script: Exception) -> None:
        self.name = name
        self.script = list(script)
        self.calls = 0
        self.sent: list[Message] = []

    def send(self, message: Message, *, timeout: float) -> Accepted:
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        self.sent.append(message)
        return Accepted(f"{self.name}-{len(self.sent)}")


def refused() -> TransientError:
    return TransientError("cannot reach blastengine (ConnectError)")


@pytest.fixture
def ses(dynamodb: Any) -> Any:
    """moto's SES v2, with the sender verified (inside the dynamodb fixture's mock_aws)."""
    client = boto3.client("sesv2", region_name="us-east-1", config=client_config(5.0))
    client.create_email_identity(EmailIdentity="noreply@example.com")
    return client


def test_ses_as_the_deployments_provider_sends_and_the_history_says_so(
    make_dispatcher, table, stream_record, invoke, ses
) -> None:
    # GIVEN a deployment on SES alone (no blastengine credentials at all)
    dispatcher = make_dispatcher(
        mail_provider="ses", ses_client=ses, blastengine_login_id=None, blastengine_api_key=None
    )
    record = insert(
        table, stream_record, row("ses-1", html="<p>Hi __name__</p>", insert_code={"name": "Alice"})
    )

    # WHEN the row is sent
    metrics.clear_metrics()
    response = invoke(dispatcher, record)

    # THEN SES took it, as MIME with the insert code filled, and the history names SES
    assert failed_ids(response) == []
    (sent,) = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    mail = email.message_from_string(sent.raw_data)
    assert "alice@example.com" in sent.destinations
    assert "Hi Alice" in mail.as_string() or "Alice" in str(mail.get_payload())
    assert table.get("ses-1") is None
    (item,) = table.history("ses-1")
    assert attr(item, "provider") == "ses"
    assert attr(item, "delivery_id") == sent.id
    # AND the metrics say which provider sent it
    assert "Sent_ses" in metrics.metric_set
    assert "Sent_blastengine" not in metrics.metric_set


def test_a_row_may_pin_its_provider(
    make_dispatcher, table, stream_record, invoke, blastengine, ses
) -> None:
    # GIVEN a blastengine deployment, and a row that names SES
    dispatcher = make_dispatcher(ses_client=ses)
    record = insert(table, stream_record, row("pin-1", provider="ses"))

    invoke(dispatcher, record)

    # THEN SES sent it, blastengine was not asked
    assert blastengine.route.call_count == 0
    assert attr(table.history("pin-1")[0], "provider") == "ses"


def test_a_row_naming_a_provider_the_deployment_lacks_fails_config(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    dispatcher = make_dispatcher()  # blastengine only: no SES client is even built
    record = insert(table, stream_record, row("pin-2", provider="ses"))

    invoke(dispatcher, record)

    current = table.get("pin-2")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "config")
    assert "'ses' is not configured" in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_an_unknown_provider_is_invalid_naming_the_attribute(
    dispatcher, table, stream_record, invoke
) -> None:
    invoke(dispatcher, insert(table, stream_record, row("pin-3", provider="mailgun")))

    current = table.get("pin-3")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "invalid")
    assert "provider: 'mailgun' is not one of blastengine, ses" in attr(current, "last_error")


def _failover(make_dispatcher: Any, primary: Scripted, secondary: Scripted, **kw: Any) -> Any:
    return make_dispatcher(
        failover_provider="ses",
        providers={"blastengine": primary, "ses": secondary},
        **kw,
    )


def test_a_send_the_primary_proved_it_did_not_take_goes_through_the_failover_once(
    make_dispatcher, table, stream_record, invoke
) -> None:
    # GIVEN blastengine refuses connections, and SES is the failover provider
    primary = Scripted("blastengine", refused(), refused(), refused())
    secondary = Scripted("ses")
    dispatcher = _failover(make_dispatcher, primary, secondary)
    record = insert(table, stream_record, row("fo-1"))

    # WHEN the row is sent
    response = invoke(dispatcher, record)

    # THEN after its FAILOVER_AFTER_ATTEMPTS (2), SES sent it in the same invocation
    assert failed_ids(response) == []
    assert primary.calls == 2
    assert len(secondary.sent) == 1
    (item,) = table.history("fo-1")
    assert (attr(item, "provider"), attr(item, "delivery_id")) == ("ses", "ses-1")
    assert attr(item, "attempts") == "3"

    # WHEN Lambda redelivers the record
    invoke(dispatcher, record)

    # THEN it replays: no provider is asked again
    assert (primary.calls, secondary.calls) == (2, 1)


@pytest.mark.parametrize(
    "error",
    [
        RejectedError("HTTP 400: to: invalid", http_status=400),
        AmbiguousSendError("no answer from blastengine within 5.0s (ReadTimeout)"),
    ],
    ids=["rejected", "ambiguous"],
)
def test_a_refusal_or_an_unanswered_send_is_never_failed_over(
    make_dispatcher, table, stream_record, invoke, error
) -> None:
    primary = Scripted("blastengine", error)
    secondary = Scripted("ses")
    dispatcher = _failover(make_dispatcher, primary, secondary)

    invoke(dispatcher, insert(table, stream_record, row("fo-2")))

    assert secondary.calls == 0
    current = table.get("fo-2")
    assert attr(current, "error_kind") == error.kind.value
    if isinstance(error, AmbiguousSendError):
        # the row waits for blastengine's look-up, the only provider that may have it
        marker = Unsettled.from_attribute(current["unsettled"])
        assert marker is not None
        assert marker.provider == "blastengine"


def test_a_row_that_pins_the_primary_is_not_failed_over(
    make_dispatcher, table, stream_record, invoke
) -> None:
    primary = Scripted("blastengine", refused(), refused(), refused())
    secondary = Scripted("ses")
    dispatcher = _failover(make_dispatcher, primary, secondary)

    invoke(dispatcher, insert(table, stream_record, row("fo-3", provider="blastengine")))

    assert secondary.calls == 0
    assert primary.calls == 3  # its whole budget: nothing waits behind it
    assert attr(table.get("fo-3"), "status") == "deferred"


def test_after_the_threshold_the_circuit_skips_the_primary_for_every_invocation(
    make_dispatcher, table, stream_record, invoke, clock
) -> None:
    # GIVEN blastengine down, a circuit of 2 failures (shared through the limit table)
    primary = Scripted("blastengine", *[refused() for _ in range(20)])
    secondary = Scripted("ses")
    kw = {"rate_limit_table_name": TABLE_NAMES["RateLimitTable"], "failover_threshold": 2}
    first = _failover(make_dispatcher, primary, secondary, **kw)

    # WHEN two rows fail over
    for n in (1, 2):
        invoke(first, insert(table, stream_record, row(f"cb-{n}")))
    calls = primary.calls
    assert calls == 4

    # THEN another container (another shard) skips blastengine altogether
    other = _failover(make_dispatcher, primary, secondary, **kw)
    invoke(other, insert(table, stream_record, row("cb-3")))
    assert primary.calls == calls
    assert len(secondary.sent) == 3

    # AND after the cool-down, blastengine is probed again
    clock.advance(121)
    invoke(other, insert(table, stream_record, row("cb-4")))
    assert primary.calls == calls + 2


class _Killed(BaseException):
    """Stands in for SIGKILL: no ``except Exception`` sees it."""


def test_a_send_interrupted_with_failover_on_is_looked_up_at_both_providers(
    make_dispatcher, table, stream_record, invoke, blastengine, ses, clock, dynamodb
) -> None:
    # GIVEN failover to SES (with its configuration set, so SES's Send events are kept)
    dispatcher = make_dispatcher(
        failover_provider="ses",
        ses_client=ses,
        ses_configuration_set="mail-events",
        bounce_table_name=TABLE_NAMES["BounceTable"],
    )
    record = insert(table, stream_record, row("int-1"))

    # AND an invocation killed mid-send: which provider had the mail died with it
    def die(request: httpx.Request) -> httpx.Response:
        raise _Killed

    blastengine.script.append(die)
    with pytest.raises(_Killed):
        invoke(dispatcher, record)
    invoke(dispatcher, record)  # the redelivery meets the in-progress record
    current = table.get("int-1")
    marker = Unsettled.from_attribute(current["unsettled"])
    assert marker is not None
    assert marker.provider == "blastengine+ses"

    # AND SES's Send event says SES took it (the failover had sent it before the kill)
    from dispatcher.providers.ses.client import row_digest
    from dispatcher.providers.ses.lookup import SesSendLog

    SesSendLog(dynamodb, TABLE_NAMES["BounceTable"]).record(
        row=row_digest("int-1"),
        content_hash=marker.content_hash,
        message_id="ses-message-1",
        at=marker.opened_at,
    )

    # WHEN the sweeper re-fires it after the look-up delay
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    invoke(
        dispatcher, stream_record("MODIFY", raw_new=table.update("int-1", revision=1), old=current)
    )

    # THEN both were asked; SES had it: recorded, never sent again
    assert blastengine.results.call_count == 1
    assert blastengine.route.call_count == 0
    assert ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages == []
    assert table.get("int-1") is None
    (item,) = table.history("int-1")
    assert (attr(item, "provider"), attr(item, "delivery_id")) == ("ses", "ses-message-1")
    assert attr(item, "confirmed_by") == "lookup"


def test_blastengines_http_errors_fail_over_too(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    # GIVEN the real blastengine client answering 503, SES as the failover (a scripted one)
    blastengine.script.extend([httpx.Response(503), httpx.Response(503)])
    secondary = Scripted("ses")
    dispatcher = make_dispatcher(failover_provider="ses", providers={"ses": secondary})

    invoke(dispatcher, insert(table, stream_record, row("fo-4")))

    assert blastengine.route.call_count == 2
    assert attr(table.history("fo-4")[0], "provider") == "ses"
