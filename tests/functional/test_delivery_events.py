"""Delivery events on EventBridge: an application's ordinary rule (here to SQS, on moto) gets
one event per outcome, each with a stable id, and publishing never holds up a send."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import httpx
import pytest

from dispatcher.notify.delivery_events import DeliveryEvent, EventPublisher
from tests.conftest import row
from tests.functional.conftest import attr, insert

BUS = "mail-events"


@pytest.fixture
def subscriber(dynamodb: Any) -> Any:
    """A bus, and a rule on it that an application would write: every mail-dispatcher event
    to its queue (inside the dynamodb fixture's mock_aws)."""
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="app-mail-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="to-app", EventBusName=BUS, EventPattern=json.dumps({"source": ["mail-dispatcher"]})
    )
    events.put_targets(Rule="to-app", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])

    class Subscriber:
        client = events

        def received(self) -> list[dict[str, Any]]:
            out = []
            while True:
                got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
                messages = got.get("Messages", [])
                if not messages:
                    return out
                for m in messages:
                    out.append(json.loads(m["Body"]))
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    return Subscriber()


def test_each_outcome_is_one_event_with_what_an_application_needs(
    make_dispatcher, table, stream_record, invoke, blastengine, subscriber, clock
) -> None:
    dispatcher = make_dispatcher(event_bus_name=BUS, events_client=subscriber.client)
    blastengine.script.extend([httpx.Response(503)] * 3)  # the second row is deferred
    later = (clock.now() + timedelta(days=1)).isoformat()
    records = [
        insert(table, stream_record, row("ev-sent")),
        insert(table, stream_record, row("ev-deferred")),
        insert(table, stream_record, row("ev-invalid", to="not an address")),
        insert(table, stream_record, row("ev-later", send_after=later)),
    ]
    # (the script's 503 meets whichever row sends first: make the order certain)
    invoke(dispatcher, records[1])
    invoke(dispatcher, records[0], *records[2:])

    got = {e["detail"]["row_id"]: e for e in subscriber.received()}
    assert {k: e["detail-type"] for k, e in got.items()} == {
        "ev-deferred": "Mail Deferred",
        "ev-sent": "Mail Sent",
        "ev-invalid": "Mail Failed",
        "ev-later": "Mail Scheduled",
    }
    assert {e["source"] for e in got.values()} == {"mail-dispatcher"}
    sent = got["ev-sent"]["detail"]
    assert sent["recipient"] == "alice@example.com"
    assert sent["provider"] == "blastengine"
    assert sent["delivery_id"] == attr(table.history("ev-sent")[0], "delivery_id")
    assert sent["attempts"] == 1
    deferred = got["ev-deferred"]["detail"]
    assert deferred["error_kind"] == "transient"
    assert "HTTP 503" in deferred["reason"]
    assert deferred["retry_at"]
    assert got["ev-invalid"]["detail"]["error_kind"] == "invalid"
    assert "to:" in got["ev-invalid"]["detail"]["reason"]
    assert len({e["detail"]["event_id"] for e in got.values()}) == 4


def test_a_redelivered_record_publishes_the_same_event_id(
    make_dispatcher, table, stream_record, invoke, blastengine, subscriber
) -> None:
    dispatcher = make_dispatcher(event_bus_name=BUS, events_client=subscriber.client)
    blastengine.script.extend([httpx.Response(503)] * 6)
    record = insert(table, stream_record, row("ev-twice"))

    invoke(dispatcher, record)
    invoke(dispatcher, record)  # Lambda redelivers it (its batch failed elsewhere, say)

    first, second = subscriber.received()
    assert first["detail-type"] == second["detail-type"] == "Mail Deferred"
    assert first["detail"]["event_id"] == second["detail"]["event_id"]


class _Down:
    """An EventBridge that refuses every request."""

    def __init__(self) -> None:
        self.calls = 0

    def put_events(self, **_: Any) -> Any:
        self.calls += 1
        raise RuntimeError("EventBridge is down (test)")


def test_publishing_that_fails_never_fails_a_send(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    down = _Down()
    dispatcher = make_dispatcher(event_bus_name=BUS, events_client=down)

    response = invoke(dispatcher, insert(table, stream_record, row("ev-down")))

    assert response.get("batchItemFailures", []) == []
    assert table.get("ev-down") is None
    assert table.history("ev-down")
    assert down.calls == 2  # tried, and once more


def test_no_bus_no_events(make_dispatcher, table, stream_record, invoke, blastengine) -> None:
    dispatcher = make_dispatcher()
    invoke(dispatcher, insert(table, stream_record, row("ev-none")))
    assert dispatcher.events is None


def test_events_are_put_ten_to_a_request_and_refused_entries_once_more() -> None:
    class Partial:
        def __init__(self) -> None:
            self.requests: list[int] = []

        def put_events(self, Entries: list[Any]) -> Any:
            self.requests.append(len(Entries))
            # the first request's first entry is refused once
            failed = len(self.requests) == 1
            return {
                "Entries": [
                    {"ErrorCode": "InternalFailure"} if failed and i == 0 else {"EventId": "x"}
                    for i in range(len(Entries))
                ]
            }

    client = Partial()
    publisher = EventPublisher(client, BUS)
    publisher.add(
        DeliveryEvent("Mail Sent", f"r{i}", "2026-12-03T10:00:00.000Z", identity=(str(i),))
        for i in range(23)
    )

    assert publisher.flush() == 0
    assert client.requests == [10, 1, 10, 3]
    assert publisher.published == 23


def test_a_bounce_on_a_rows_history_is_a_mail_bounced_event(dynamodb, subscriber) -> None:
    from dispatcher.bounces.ledger import BounceLedger
    from dispatcher.bounces.payload import parse_events
    from dispatcher.recipients.suppression import SuppressionList
    from tests.conftest import TABLE_NAMES

    ledger = BounceLedger(
        bounce_table=TABLE_NAMES["BounceTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        suppressions=SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb),
        boto3_client=dynamodb,
        events=EventPublisher(subscriber.client, BUS),
    )
    dynamodb.put_item(
        TableName=TABLE_NAMES["HistoryTable"],
        Item={
            "id": {"S": "order-9"},
            "sent_at": {"S": "2026-12-03T10:00:00.000Z"},
            "provider": {"S": "blastengine"},
            "delivery_id": {"S": "77"},
            "to": {"S": "dead@example.com"},
        },
    )
    body = {
        "events": [
            {
                "event": {
                    "type": "HARDERROR",
                    "datetime": "2026-12-03T19:00:00+09:00",
                    "detail": {
                        "mailaddress": "dead@example.com",
                        "delivery_id": 77,
                        "error_code": "550",
                        "error_message": "user unknown",
                    },
                }
            }
        ]
    }
    for event in parse_events(body):
        ledger.apply(event)
    ledger.flush_events()

    [got] = subscriber.received()
    assert got["detail-type"] == "Mail Bounced"
    detail = got["detail"]
    assert (detail["row_id"], detail["delivery_id"], detail["error_kind"]) == (
        "order-9",
        "77",
        "HARDERROR",
    )
    assert detail["recipient"] == "dead@example.com"
    assert detail["provider"] == "blastengine"
