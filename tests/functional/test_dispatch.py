"""The handler end to end: moto DynamoDB, blastengine mocked at the httpx layer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import row
from tests.functional.conftest import attr, failed_ids, insert


def _throttle_once(client: Any, operation: str) -> list[int]:
    calls: list[int] = []

    def hook(**_: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "injected",
                    }
                },
                operation,
            )

    client.meta.events.register(f"before-call.dynamodb.{operation}", hook)
    return calls


def test_insert_is_sent_moved_to_history_and_deleted(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN an application inserted a row
    record = insert(table, stream_record, row("welcome-1", cc=["c@example.com"]))

    # WHEN the stream delivers it
    response = invoke(dispatcher, record)

    # THEN it was sent once, recorded in history and removed from the send table
    assert failed_ids(response) == []
    assert len(blastengine.payloads) == 1
    assert blastengine.payloads[0]["to"] == "alice@example.com"
    assert table.get("welcome-1") is None
    [history] = table.history("welcome-1")
    assert attr(history, "delivery_id") == "1"
    assert attr(history, "provider") == "blastengine"
    assert attr(history, "attempts") == "1"
    assert attr(history, "cc_count") == "1"
    sent_at = datetime.fromisoformat(attr(history, "sent_at").replace("Z", "+00:00"))
    assert int(attr(history, "expires_at")) > sent_at.timestamp() + 80 * 86400


def test_the_dispatchers_own_echo_never_sends(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a row the dispatcher stamped failed, and the MODIFY that stamp produced
    old = row("r1")
    table.put({**old, "status": "failed", "error_kind": "rejected", "attempts": 1})
    echo = stream_record(
        "MODIFY", new={**old, "status": "failed", "error_kind": "rejected", "attempts": 1}, old=old
    )

    # WHEN the echo is delivered
    response = invoke(dispatcher, echo)

    # THEN nothing is sent and nothing is written
    assert failed_ids(response) == []
    assert blastengine.route.call_count == 0
    assert attr(table.get("r1"), "status") == "failed"


def test_the_same_event_delivered_twice_sends_once(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    record = insert(table, stream_record, row("r1"))

    invoke(dispatcher, record)
    response = invoke(dispatcher, record)  # at-least-once: the stream redelivers it

    assert failed_ids(response) == []
    assert blastengine.route.call_count == 1
    assert len(table.history("r1")) == 1


def test_a_row_reinserted_with_identical_content_is_a_recorded_duplicate(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a row was sent, then re-inserted with the same id and content within the window
    invoke(dispatcher, insert(table, stream_record, row("r1")))
    again = insert(table, stream_record, row("r1"))

    # WHEN its INSERT arrives
    invoke(dispatcher, again)

    # THEN it is not sent again; its history says a duplicate was suppressed
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None
    [history] = table.history("r1")
    assert attr(history, "replays") == "1"


def test_a_revision_bump_sends_the_same_content_again(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    invoke(dispatcher, insert(table, stream_record, row("r1")))
    clock.advance(1)
    invoke(dispatcher, insert(table, stream_record, row("r1", revision=2)))

    assert blastengine.route.call_count == 2
    assert len(table.history("r1")) == 2


def test_send_succeeded_but_bookkeeping_failed_then_redelivery_sends_nothing_more(
    dispatcher, dynamodb, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN the transaction that moves the row is throttled once
    record = insert(table, stream_record, row("r1"))
    calls = _throttle_once(dynamodb, "TransactWriteItems")

    # WHEN the record is processed: the mail goes out, the bookkeeping fails
    first = invoke(dispatcher, record)

    # THEN the record is reported for retry and the row is still there
    assert failed_ids(first) == [record["dynamodb"]["SequenceNumber"]]
    assert blastengine.route.call_count == 1
    assert table.get("r1") is not None
    assert table.history("r1") == []

    # WHEN Lambda redelivers it
    second = invoke(dispatcher, record)

    # THEN the bookkeeping completes from the idempotency record, with no second send
    assert failed_ids(second) == []
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None
    assert len(table.history("r1")) == 1
    assert len(calls) == 2


def test_a_throttled_read_is_a_batch_item_failure_and_the_row_is_kept(
    dispatcher, dynamodb, table, stream_record, blastengine, invoke
) -> None:
    ok = insert(table, stream_record, row("ok"))
    throttled = insert(table, stream_record, row("throttled"))
    seen: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if params["TableName"] != "send":
            return
        row_id = params["Key"]["id"]["S"]
        seen.append(row_id)
        if row_id == "throttled":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "GetItem")

    dynamodb.meta.events.register("before-parameter-build.dynamodb.GetItem", hook)

    response = invoke(dispatcher, ok, throttled)
    dynamodb.meta.events.unregister("before-parameter-build.dynamodb.GetItem", hook)

    assert failed_ids(response) == [throttled["dynamodb"]["SequenceNumber"]]
    assert table.get("throttled") is not None
    assert table.get("ok") is None


def test_a_row_edited_while_in_flight_is_kept_and_its_own_modify_sends_the_new_content(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN the row is edited while its send is in flight
    original = row("r1", subject="Draft")
    record = insert(table, stream_record, original)
    edited: dict[str, Any] = {}

    def edit_during_send(request: httpx.Request) -> httpx.Response:
        edited.update(table.update("r1", subject="Final"))
        return httpx.Response(201, json={"delivery_id": 900})

    blastengine.script.append(edit_during_send)

    # WHEN the INSERT is processed
    invoke(dispatcher, record)

    # THEN the old content's send is in history, but the edited row is kept
    assert attr(table.get("r1"), "subject") == "Final"
    assert [attr(h, "subject") for h in table.history("r1")] == ["Draft"]

    # WHEN the edit's own MODIFY arrives
    modify = stream_record("MODIFY", raw_new=edited, old=original)
    invoke(dispatcher, modify)

    # THEN the new content is sent and the row moved
    assert [p["subject"] for p in blastengine.payloads] == ["Draft", "Final"]
    assert table.get("r1") is None


def test_a_failure_while_edited_in_flight_does_not_stamp_the_new_content(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    record = insert(table, stream_record, row("r1", subject="Draft"))

    def edit_then_reject(request: httpx.Request) -> httpx.Response:
        table.update("r1", subject="Fixed")
        return httpx.Response(400, json={"error_messages": {"subject": ["bad"]}})

    blastengine.script.append(edit_then_reject)

    invoke(dispatcher, record)

    current = table.get("r1")
    assert attr(current, "subject") == "Fixed"
    assert "status" not in current
    assert "last_error" not in current


def test_failure_stamping_never_resurrects_a_deleted_row(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    record = insert(table, stream_record, row("r1"))

    def cancel_then_fail(request: httpx.Request) -> httpx.Response:
        table.delete("r1")
        return httpx.Response(400, json={"error_messages": {"to": ["rejected"]}})

    blastengine.script.append(cancel_then_fail)

    response = invoke(dispatcher, record)

    assert failed_ids(response) == []
    assert table.get("r1") is None
    assert table.rows() == []


def test_transient_errors_past_the_invocation_budget_defer_the_row(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN the provider answers 503 to every request
    record = insert(table, stream_record, row("r1"))
    blastengine.script.extend([httpx.Response(503)] * 10)

    # WHEN the record is processed
    invoke(dispatcher, record)

    # THEN after the in-invocation budget (3 attempts) the row is deferred for the sweeper
    current = table.get("r1")
    assert attr(current, "status") == "deferred"
    assert attr(current, "error_kind") == "transient"
    assert attr(current, "attempts") == "3"
    assert attr(current, "http_status") == "503"
    assert attr(current, "retry_at") > attr(current, "failed_at")
    assert blastengine.route.call_count == 3


def test_the_attempt_limit_fails_the_row_for_good(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a deferred row that has used 7 of its 8 attempts, re-fired by the sweeper
    before = row(
        "r1",
        status="deferred",
        attempts=7,
        retry_at="2026-11-24T08:00:00.000Z",
        error_kind="transient",
    )
    table.put({**before, "revision": 1})
    refire = stream_record("MODIFY", new={**before, "revision": 1}, old=before)
    blastengine.script.extend([httpx.Response(500)] * 5)

    invoke(dispatcher, refire)

    current = table.get("r1")
    assert attr(current, "status") == "failed"
    assert attr(current, "attempts") == "8"
    assert "retry_at" not in current  # out of the sweeper's index
    assert attr(current, "last_error").startswith("gave up after 8 attempts")
    assert blastengine.route.call_count == 1


def test_a_429_retry_after_is_waited_on_the_clock_not_for_real(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    record = insert(table, stream_record, row("r1"))
    blastengine.script.append(httpx.Response(429, headers={"Retry-After": "4"}))

    invoke(dispatcher, record)

    assert table.get("r1") is None
    assert blastengine.route.call_count == 2
    assert 4.0 in clock.sleeps


def test_bad_credentials_fail_the_row_as_a_config_error(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    record = insert(table, stream_record, row("r1"))
    blastengine.script.append(httpx.Response(401, json={"error_messages": {"auth": ["no"]}}))

    invoke(dispatcher, record)

    current = table.get("r1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "config")
    assert blastengine.route.call_count == 1


def test_records_of_one_row_in_one_batch_run_in_stream_order(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a row inserted and edited before the batch ran
    draft = row("r1", subject="Draft")
    insert = stream_record("INSERT", new=draft)
    final = {**draft, "subject": "Final"}
    table.put(final)
    modify = stream_record("MODIFY", new=final, old=draft)

    # WHEN both records arrive in one batch
    response = invoke(dispatcher, insert, modify)

    # THEN only the current content is sent: the INSERT is recognised as superseded
    assert failed_ids(response) == []
    assert [p["subject"] for p in blastengine.payloads] == ["Final"]
    assert table.get("r1") is None


def test_a_future_send_after_schedules_the_row_until_the_sweeper_refires_it(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN a row to be sent an hour from now
    later = row("r1", send_after="2026-11-24T19:00:00+09:00")  # 10:00 UTC; the clock is 09:00
    record = insert(table, stream_record, later)

    # WHEN it is processed
    invoke(dispatcher, record)

    # THEN it is parked with retry_at = send_after, unsent
    current = table.get("r1")
    assert attr(current, "status") == "scheduled"
    assert attr(current, "retry_at") == "2026-11-24T10:00:00.000Z"
    assert blastengine.route.call_count == 0

    # WHEN the time has come and the sweeper bumps its revision
    clock.advance(3601)
    refired = table.update("r1", revision=1)
    invoke(dispatcher, stream_record("MODIFY", raw_new=refired, old=None))

    # THEN it is sent
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None


class _ProcessKilled(BaseException):
    """Stands in for SIGKILL: no ``except Exception`` sees it, so nothing is cleaned up."""


def test_a_redelivery_after_a_death_mid_send_waits_for_the_lookup_then_sends(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN an invocation that died mid-send, leaving its idempotency record "in progress"
    record = insert(table, stream_record, row("r1"))

    deaths: list[httpx.Request] = []

    def die(request: httpx.Request) -> httpx.Response:
        deaths.append(request)
        raise _ProcessKilled

    blastengine.script.append(die)
    with pytest.raises(_ProcessKilled):
        invoke(dispatcher, record)
    assert len(deaths) == 1

    # WHEN Lambda redelivers the record
    redelivered = invoke(dispatcher, record)

    # THEN it is not retried forever against the in-progress record, nor sent blindly: the
    # row waits for the look-up (the dead request may have been taken), with the reason
    assert failed_ids(redelivered) == []
    current = table.get("r1")
    assert attr(current, "status") == "deferred"
    assert attr(current, "error_kind") == "ambiguous"
    assert attr(current, "attempts") == "1"
    assert "stopped mid-send" in attr(current, "last_error")
    assert attr(current, "retry_at") > attr(current, "failed_at")
    assert "unsettled" in current
    assert blastengine.route.call_count == 0  # (respx does not count the dead request)

    # WHEN the sweeper re-fires it after the look-up delay (a new revision)
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    refired = table.update("r1", revision=1)
    invoke(dispatcher, stream_record("MODIFY", raw_new=refired, old=current))

    # THEN blastengine was asked, had nothing, and the mail is sent and moved
    assert blastengine.results.call_count == 1
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None


def test_a_sent_mail_starts_accepted_and_a_redelivery_keeps_its_later_status(
    dispatcher, table, stream_record, invoke, dynamodb, blastengine
) -> None:
    from tests.conftest import TABLE_NAMES

    # GIVEN a row sent: its history item starts `accepted`
    record = insert(table, stream_record, row("acc-1"))
    invoke(dispatcher, record)
    [item] = table.history("acc-1")
    assert (item["delivery_status"], item["delivery_status_rank"]) == (
        {"S": "accepted"},
        {"N": "0"},
    )
    # WHEN the provider reports it delivered, and then the same record is redelivered
    dynamodb.update_item(
        TableName=TABLE_NAMES["HistoryTable"],
        Key={"id": item["id"], "sent_at": item["sent_at"]},
        UpdateExpression="SET delivery_status = :d, delivery_status_rank = :r",
        ExpressionAttributeValues={":d": {"S": "delivered"}, ":r": {"N": "2"}},
    )
    table.put_raw(record["dynamodb"]["NewImage"])
    invoke(dispatcher, record)
    # THEN the replay finished the bookkeeping without moving the status back
    [again] = table.history("acc-1")
    assert again["delivery_status"] == {"S": "delivered"}


@pytest.mark.parametrize("days", [30, 0])
def test_the_mail_as_sent_is_kept_for_history_body_days_apart_from_the_history(
    make_dispatcher, table, stream_record, invoke, dynamodb, blastengine, days
) -> None:
    from dispatcher.support.clock import parse_iso
    from tests.conftest import TABLE_NAMES

    dispatcher = make_dispatcher(
        sent_mail_table_name=TABLE_NAMES["SentMailTable"], history_body_days=days
    )
    values = row("body-1", subject="Hi __n__", html="<p>__n__</p>", insert_code={"n": "<Mio>"})
    invoke(dispatcher, insert(table, stream_record, values))
    [item] = table.history("body-1")
    kept = dispatcher.store.sent_mail("body-1", item["sent_at"]["S"])
    if days == 0:
        assert kept is None
        return
    # what the recipient got: filled in, the html's value escaped
    assert kept is not None
    assert (kept["subject"], kept["html"]) == ("Hi <Mio>", "<p>&lt;Mio&gt;</p>")
    raw = dynamodb.get_item(
        TableName=TABLE_NAMES["SentMailTable"], Key={"id": item["id"], "sent_at": item["sent_at"]}
    )["Item"]
    sent = parse_iso(item["sent_at"]["S"])
    assert sent is not None
    assert int(raw["expires_at"]["N"]) == int(sent.timestamp()) + 30 * 86400
