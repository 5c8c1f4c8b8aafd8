"""SES's published events reach the same bounce path as blastengine's webhook, and its Send
events settle an SES send whose answer never came."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher.bounces.ledger import BounceLedger
from dispatcher.bounces.payload import BadBounceError, parse_events
from dispatcher.bounces.ses_events import SesEvents
from dispatcher.model.unsettled import Unsettled
from dispatcher.providers.ses.client import CONTENT_TAG, ROW_TAG, row_digest
from dispatcher.providers.ses.lookup import SesLookup, SesSendLog
from dispatcher.recipients.suppression import SuppressionList
from dispatcher.support.observability import metrics
from tests.conftest import TABLE_NAMES
from tests.functional.conftest import get_history, put_history

MESSAGE_ID = "0100018c-ses-message-1"


def _event(detail: dict[str, Any]) -> dict[str, Any]:
    """As EventBridge delivers what a configuration set's event destination published."""
    kind = detail["eventType"]
    return {
        "version": "0",
        "id": "5e2b-example",
        "detail-type": {
            "Bounce": "Email Bounced",
            "Complaint": "Email Complaint Received",
            "Send": "Email Sent",
            "Delivery": "Email Delivered",
            "DeliveryDelay": "Email Delivery Delayed",
            "Reject": "Email Rejected",
            "Open": "Email Opened",
            "Click": "Email Clicked",
        }.get(kind, f"Email {kind}"),
        "source": "aws.ses",
        "account": "123456789012",
        "time": "2026-12-03T10:00:05Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/mail-events"],
        "detail": detail,
    }


def _mail(**tags: list[str]) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-03T10:00:00.000Z",
        "source": "noreply@example.com",
        "messageId": MESSAGE_ID,
        "destination": ["dead@example.com"],
        "tags": {"ses:configuration-set": ["mail-events"], **tags},
    }


def bounce(kind: str = "Permanent", sub: str = "General") -> dict[str, Any]:
    return _event(
        {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": kind,
                "bounceSubType": sub,
                "bouncedRecipients": [
                    {
                        "emailAddress": "Dead@Example.com",
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": "2026-12-03T10:00:04.000Z",
                "feedbackId": "0100018c-feedback",
            },
            "mail": _mail(),
        }
    )


def complaint() -> dict[str, Any]:
    return _event(
        {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": "dead@example.com"}],
                "timestamp": "2026-12-03T11:00:00.000Z",
                "feedbackId": "0100018c-feedback-2",
                "complaintFeedbackType": "abuse",
            },
            "mail": _mail(),
        }
    )


@pytest.fixture
def suppressions(dynamodb: Any) -> SuppressionList:
    return SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb)


@pytest.fixture
def events(dynamodb: Any, suppressions: SuppressionList) -> SesEvents:
    ledger = BounceLedger(
        bounce_table=TABLE_NAMES["BounceTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        suppressions=suppressions,
        boto3_client=dynamodb,
    )
    return SesEvents(ledger, SesSendLog(dynamodb, TABLE_NAMES["BounceTable"]))


SENT_AT = "2026-12-03T10:00:00.000Z"


def _ses_history(dynamodb: Any) -> None:
    put_history(
        dynamodb, sent_at=SENT_AT, provider="ses", delivery_id=MESSAGE_ID, to="dead@example.com"
    )


def test_a_permanent_bounce_is_a_hard_error_on_the_history_item_and_suppresses(
    events, suppressions, dynamodb
) -> None:
    _ses_history(dynamodb)

    assert events.handle(bounce()) == {"kind": "Bounce", "recorded": 1}

    item = get_history(dynamodb, sent_at=SENT_AT)
    assert item["bounce_type"] == {"S": "HARDERROR"}
    assert item["bounced_addresses"] == {"SS": ["dead@example.com"]}
    assert item["bounce_code"] == {"S": "5.1.1"}
    entry = suppressions.find(["dead@example.com"])["dead@example.com"]
    assert (entry.reason, entry.delivery_id) == ("HARDERROR", MESSAGE_ID)


def test_the_same_event_delivered_twice_changes_nothing(events, dynamodb) -> None:
    _ses_history(dynamodb)
    metrics.clear_metrics()
    events.handle(bounce())
    before = (
        get_history(dynamodb, sent_at=SENT_AT),
        dynamodb.scan(TableName=TABLE_NAMES["BounceTable"])["Items"],
    )

    events.handle(copy.deepcopy(bounce()))

    assert (
        get_history(dynamodb, sent_at=SENT_AT),
        dynamodb.scan(TableName=TABLE_NAMES["BounceTable"])["Items"],
    ) == before
    # and the bounce is counted once (the bounce-share alarm reads Bounced)
    assert metrics.metric_set["Bounced"]["Value"] == [1.0]
    assert metrics.metric_set["Bounced_HARDERROR"]["Value"] == [1.0]


@pytest.mark.parametrize("kind", ["Transient", "Undetermined"])
def test_a_transient_bounce_is_recorded_and_never_suppresses(
    events, suppressions, dynamodb, kind
) -> None:
    _ses_history(dynamodb)

    events.handle(bounce(kind, "MailboxFull"))

    assert get_history(dynamodb, sent_at=SENT_AT)["bounce_type"] == {"S": "SOFTERROR"}
    assert suppressions.find(["dead@example.com"]) == {}


def test_a_complaint_suppresses_the_address(events, suppressions, dynamodb) -> None:
    _ses_history(dynamodb)

    events.handle(complaint())

    assert get_history(dynamodb, sent_at=SENT_AT)["bounce_type"] == {"S": "COMPLAINT"}
    assert suppressions.find(["dead@example.com"])["dead@example.com"].reason == "COMPLAINT"


def test_a_bounce_before_its_history_item_is_kept_as_an_orphan(events, dynamodb) -> None:
    events.handle(bounce())

    orphans = dynamodb.scan(TableName=TABLE_NAMES["BounceTable"])["Items"]
    assert [o["delivery_id"]["S"] for o in orphans] == [MESSAGE_ID]
    assert "orphan" in orphans[0]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"source": "aws.ses"}, "no detail object"),
        (_event({"eventType": "Bounce", "mail": _mail()}), "no bounce object"),
        (
            _event(
                {
                    "eventType": "Bounce",
                    "bounce": {
                        "bounceType": "Permanent",
                        "bouncedRecipients": [{}],
                        "timestamp": "2026-12-03T10:00:04Z",
                    },
                    "mail": _mail(),
                }
            ),
            "recipient 0 has no address",
        ),
        (
            _event(
                {
                    "eventType": "Complaint",
                    "complaint": {
                        "complainedRecipients": [{"emailAddress": "a@example.com"}],
                        "timestamp": "yesterday",
                    },
                    "mail": _mail(),
                }
            ),
            "timestamp must be ISO-8601",
        ),
    ],
)
def test_an_event_not_of_ses_shape_is_dropped_saying_why_and_writes_nothing(
    events, dynamodb, event, reason
) -> None:
    answer = events.handle(event)

    assert reason in answer["dropped"]
    assert dynamodb.scan(TableName=TABLE_NAMES["BounceTable"])["Items"] == []


def test_other_event_types_are_not_used(events, dynamodb) -> None:
    answer = events.handle(
        _event({"eventType": "Subscription", "subscription": {}, "mail": _mail()})
    )

    assert answer == {"kind": "Subscription", "recorded": 0}
    assert dynamodb.scan(TableName=TABLE_NAMES["BounceTable"])["Items"] == []


def _open(kind: str, at: str) -> dict[str, Any]:
    part = {"timestamp": at, "ipAddress": "192.0.2.1", "userAgent": "Mail"}
    if kind == "Click":
        part["link"] = "https://example.com/a"
    return _event({"eventType": kind, kind.lower(): part, "mail": _mail()})


def test_the_earliest_open_or_click_is_kept_and_never_moves_the_status(events, dynamodb) -> None:
    # GIVEN a mail sent through SES and delivered, with open tracking on
    _ses_history(dynamodb)
    events.handle(_status_event("Delivery"))
    # WHEN SES reports a click, then an earlier open arriving late, then the click again
    first = events.handle(_open("Click", "2026-12-03T12:00:00.000Z"))
    events.handle(_open("Open", "2026-12-03T11:59:00.000Z"))
    events.handle(_open("Click", "2026-12-03T12:00:00.000Z"))
    # THEN the earliest is kept as opened_at, whatever the order; the status stays delivered
    assert first == {"kind": "Click", "recorded": 1}
    item = get_history(dynamodb, sent_at=SENT_AT)
    assert item["opened_at"] == {"S": "2026-12-03T11:59:00.000Z"}
    assert item["delivery_status"] == {"S": "delivered"}


def test_an_open_for_a_mail_the_history_does_not_hold_creates_nothing(events, dynamodb) -> None:
    assert events.handle(_open("Open", "2026-12-03T12:00:00.000Z"))["recorded"] == 0
    assert dynamodb.scan(TableName=TABLE_NAMES["HistoryTable"])["Items"] == []


def test_blastengines_webhook_still_refuses_a_complaint_type() -> None:
    body = {
        "events": [
            {
                "event": {
                    "type": "COMPLAINT",
                    "datetime": "2026-12-03T10:00:00+09:00",
                    "detail": {"mailaddress": "a@example.com", "delivery_id": 1},
                }
            }
        ]
    }
    with pytest.raises(BadBounceError, match="HARDERROR, SOFTERROR, DROP"):
        parse_events(body)


def _unsettled(content_hash: str = "c0ffee") -> Unsettled:
    return Unsettled(
        provider="ses",
        to="dead@example.com",
        opened_at=datetime(2026, 12, 3, 9, 59, 59, tzinfo=UTC),
        closed_at=datetime(2026, 12, 3, 10, 0, 9, tzinfo=UTC),
        digests=("d",),
        content_hash=content_hash,
        reason="no answer from SES within 10.0s (ReadTimeoutError)",
        row_id="order-1",
    )


def test_a_send_event_settles_an_unanswered_ses_send(events, dynamodb) -> None:
    lookup = SesLookup(SesSendLog(dynamodb, TABLE_NAMES["BounceTable"]))
    assert lookup.find(_unsettled(), timeout=5, before_request=lambda: None) is None

    # WHEN SES's Send event for the mail arrives (its tags name the row and the content)
    send = _event(
        {
            "eventType": "Send",
            "send": {},
            "mail": _mail(**{ROW_TAG: [row_digest("order-1")], CONTENT_TAG: ["c0ffee"]}),
        }
    )
    assert events.handle(send) == {"kind": "Send", "recorded": 1}

    # THEN the look-up finds that message, and only for the content that was sent
    found = lookup.find(_unsettled(), timeout=5, before_request=lambda: None)
    assert found is not None
    assert found.delivery_id == MESSAGE_ID
    assert lookup.find(_unsettled("other"), timeout=5, before_request=lambda: None) is None


def test_a_send_event_of_another_sender_on_the_configuration_set_is_ignored(
    events, dynamodb
) -> None:
    answer = events.handle(_event({"eventType": "Send", "send": {}, "mail": _mail()}))

    assert answer == {"kind": "Send", "recorded": 0}


def _status_event(kind: str, at: str = "2026-12-03T10:00:03.000Z") -> dict[str, Any]:
    parts = {
        "Delivery": ("delivery", {
            "timestamp": at, "recipients": ["Dead@Example.com"],
            "smtpResponse": "250 2.6.0 Message received", "processingTimeMillis": 546,
        }),
        "DeliveryDelay": ("deliveryDelay", {
            "timestamp": at, "delayType": "MailboxFull",
            "delayedRecipients": [{"emailAddress": "dead@example.com", "status": "4.2.2",
                                   "diagnosticCode": "smtp; 452 4.2.2 mailbox full"}],
        }),
        "Reject": ("reject", {"reason": "Bad content"}),
    }  # fmt: skip
    part, body = parts[kind]
    return _event({"eventType": kind, part: body, "mail": _mail()})


def _status(dynamodb: Any) -> tuple[str, str | None]:
    item = get_history(dynamodb, sent_at=SENT_AT)
    return item["delivery_status"]["S"], item.get("delivery_detail", {}).get("S")


def test_delivery_statuses_move_forward_only_whatever_order_they_come_in(events, dynamodb) -> None:
    from dispatcher.support.observability import metrics

    # GIVEN a mail sent through SES, accepted
    _ses_history(dynamodb)
    dynamodb.update_item(
        TableName=TABLE_NAMES["HistoryTable"],
        Key={"id": {"S": "order-1"}, "sent_at": {"S": SENT_AT}},
        UpdateExpression="SET delivery_status = :a, delivery_status_rank = :z",
        ExpressionAttributeValues={":a": {"S": "accepted"}, ":z": {"N": "0"}},
    )
    metrics.clear_metrics()
    try:
        # WHEN SES reports a delay, then the delivery
        events.handle(_status_event("DeliveryDelay"))
        assert _status(dynamodb) == ("delayed", "smtp; 452 4.2.2 mailbox full")
        events.handle(_status_event("Delivery"))
        assert _status(dynamodb) == ("delivered", "250 2.6.0 Message received")
        # THEN a late delay, or the delivery again, changes nothing
        events.handle(_status_event("DeliveryDelay", at="2026-12-03T10:00:09.000Z"))
        events.handle(_status_event("Delivery"))
        assert _status(dynamodb)[0] == "delivered"
        assert metrics.metric_set["Delivered"]["Value"] == [1.0]
        # AND a bounce after delivery ends it bounced; a complaint comes after that
        events.handle(bounce())
        assert _status(dynamodb)[0] == "bounced"
        events.handle(complaint())
        assert _status(dynamodb)[0] == "complained"
        events.handle(_status_event("Delivery"))
        assert _status(dynamodb)[0] == "complained"
    finally:
        metrics.clear_metrics()


def test_a_reject_marks_the_mail_rejected(events, dynamodb) -> None:
    _ses_history(dynamodb)
    events.handle(_status_event("Reject"))
    assert _status(dynamodb) == ("rejected", "Bad content")


def test_a_status_for_a_mail_the_history_does_not_hold_creates_nothing(events, dynamodb) -> None:
    from dispatcher.support.observability import metrics

    metrics.clear_metrics()
    try:
        answer = events.handle(_status_event("Delivery"))
        assert answer == {"kind": "Delivery", "recorded": 0}
        assert dynamodb.scan(TableName=TABLE_NAMES["HistoryTable"])["Items"] == []
        assert metrics.metric_set["StatusForUnknownMail"]["Value"] == [1.0]
    finally:
        metrics.clear_metrics()


def test_a_malformed_status_event_is_dropped_and_counted(events) -> None:
    broken = _status_event("Delivery")
    broken["detail"]["delivery"]["recipients"] = "dead@example.com"
    assert "dropped" in events.handle(broken)
