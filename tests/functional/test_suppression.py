"""A suppressed `to` fails the row with no API call; a suppressed cc/bcc is left out."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.recipients.suppression import Suppression, SuppressionList
from tests.conftest import TABLE_NAMES, row
from tests.fakes import throttle_first_call
from tests.functional.conftest import attr, failed_ids


@pytest.fixture
def suppressions(dynamodb: Any) -> SuppressionList:
    return SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb)


def _bounced(address: str, reason: str = "HARDERROR") -> Suppression:
    return Suppression(
        address=address,
        reason=reason,
        added_at="2026-11-30T01:00:00.000Z",
        bounced_at="2026-11-30T10:00:00+09:00",
        code="550",
        message="user unknown",
        delivery_id="1128",
    )


def test_a_row_to_a_suppressed_address_fails_suppressed_naming_the_bounce(
    dispatcher, suppressions, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN an address that hard-bounced (stored normalised), and a row to it in other case
    suppressions.add(_bounced("dead@example.com"))
    raw = table.put(row("s-1", to="Dead@Example.com"))

    response = invoke(dispatcher, stream_record("INSERT", raw_new=raw))

    # THEN the row fails `suppressed`, saying which bounce, and nothing reached the API
    assert failed_ids(response) == []
    current = table.get("s-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "suppressed")
    assert "HARDERROR bounce at 2026-11-30T10:00:00+09:00, code 550" in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_suppressed_cc_and_bcc_are_left_out_and_the_history_says_which(
    dispatcher, suppressions, table, stream_record, blastengine, invoke
) -> None:
    suppressions.add(_bounced("gone@example.com", reason="DROP"))
    suppressions.add(_bounced("old@example.com"))
    raw = table.put(row("s-2", cc=["gone@example.com", "ok@example.com"], bcc=["old@example.com"]))

    invoke(dispatcher, stream_record("INSERT", raw_new=raw))

    [payload] = blastengine.payloads
    assert payload["cc"] == ["ok@example.com"]
    assert "bcc" not in payload
    [history] = table.history("s-2")
    assert [v["S"] for v in history["suppressed_recipients"]["L"]] == [
        "gone@example.com",
        "old@example.com",
    ]


def test_lifting_a_suppression_and_editing_the_row_sends_it(
    dispatcher, suppressions, table, stream_record, blastengine, invoke
) -> None:
    suppressions.add(_bounced("back@example.com"))
    raw = table.put(row("s-3", to="back@example.com"))
    invoke(dispatcher, stream_record("INSERT", raw_new=raw))
    stamped = table.get("s-3")

    assert suppressions.remove("BACK@example.com", now="2026-12-01T00:00:00.000Z") is True
    assert suppressions.remove("back@example.com", now="2026-12-01T00:00:01.000Z") is False
    edited = table.update("s-3", revision=1)
    invoke(dispatcher, stream_record("MODIFY", raw_new=edited, old=None) | {
        "dynamodb": {**stream_record("MODIFY", raw_new=edited)["dynamodb"], "OldImage": stamped}
    })  # fmt: skip

    assert blastengine.route.call_count == 1
    assert table.get("s-3") is None


def test_every_recipient_is_checked_in_one_read(
    dispatcher, suppressions, table, stream_record, blastengine, invoke, dynamodb
) -> None:
    calls: list[int] = []
    dynamodb.meta.events.register("before-call.dynamodb.BatchGetItem", lambda **_: calls.append(1))
    raw = table.put(row("s-4", cc=[f"c{i}@example.com" for i in range(10)]))

    invoke(dispatcher, stream_record("INSERT", raw_new=raw))

    assert len(calls) == 1
    assert blastengine.route.call_count == 1


def test_a_redelivered_mail_already_sent_is_finished_though_its_address_was_suppressed_since(
    dispatcher, suppressions, table, stream_record, blastengine, invoke, dynamodb
) -> None:
    # GIVEN a mail the provider accepted, whose history-and-delete was throttled
    failures = throttle_first_call(dynamodb, "TransactWriteItems")
    record = stream_record("INSERT", raw_new=table.put(row("s-5", to="late@example.com")))
    first = invoke(dispatcher, record)
    assert len(failed_ids(first)) == 1  # left for Lambda to retry
    # and its address bounced before the redelivery
    suppressions.add(_bounced("late@example.com"))

    second = invoke(dispatcher, record)

    # THEN the redelivery finishes the bookkeeping of the mail that went out: not "suppressed"
    assert (failures, failed_ids(second)) == ([1], [])
    assert blastengine.route.call_count == 1
    assert table.get("s-5") is None
    assert len(table.history("s-5")) == 1


def test_a_replay_keeps_the_recipients_its_send_left_out(
    dispatcher, suppressions, table, stream_record, blastengine, invoke, dynamodb
) -> None:
    suppressions.add(_bounced("gone@example.com"))
    throttle_first_call(dynamodb, "TransactWriteItems")
    raw = table.put(row("s-6", cc=["gone@example.com", "ok@example.com"]))
    record = stream_record("INSERT", raw_new=raw)
    invoke(dispatcher, record)
    # the suppression lifted between the two deliveries changes nothing of what was sent
    suppressions.remove("gone@example.com", now="2026-12-01T00:00:00.000Z")

    invoke(dispatcher, record)

    assert blastengine.route.call_count == 1
    [history] = table.history("s-6")
    assert [v["S"] for v in history["suppressed_recipients"]["L"]] == ["gone@example.com"]
    assert history["cc_count"]["N"] == "1"


def _unsubscribed(address: str, category: str) -> Suppression:
    return Suppression(address, "UNSUBSCRIBE", "2026-11-30T01:00:00.000Z", scope=category)


def test_a_category_unsubscribe_holds_back_that_category_only_and_a_bounce_holds_back_all(
    make_dispatcher, suppressions, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a deployment with a newsletter, and an address unsubscribed from it
    dispatcher = make_dispatcher(mail_categories="newsletter,notifications")
    suppressions.add(_unsubscribed("Ume@example.com", "newsletter"))
    news = table.put(row("n-1", to="ume@example.com", category="newsletter"))
    reset = table.put(row("t-1", to="ume@example.com"))  # transactional: no category
    note = table.put(row("o-1", to="ume@example.com", category="notifications"))
    invoke(dispatcher, *(stream_record("INSERT", raw_new=r) for r in (news, reset, note)))
    # THEN the newsletter row is refused, naming the unsubscribe; the others are sent
    assert attr(table.get("n-1"), "error_kind") == "suppressed"
    assert "unsubscribed from newsletter mail" in attr(table.get("n-1"), "last_error")
    assert table.get("t-1") is None
    assert table.get("o-1") is None
    assert table.history("o-1")[0]["category"] == {"S": "notifications"}
    assert table.history("t-1")[0]["category"] == {"S": "transactional"}
    # AND once the address hard-bounces, every category is held back, transactional too
    suppressions.add(_bounced("ume@example.com"))
    again = table.put(row("t-2", to="ume@example.com"))
    invoke(dispatcher, stream_record("INSERT", raw_new=again))
    assert attr(table.get("t-2"), "error_kind") == "suppressed"
    # AND lifting the unsubscribe lifts it for that category only
    assert suppressions.remove("ume@example.com", now="2026-12-01T00:00:00Z", scope="newsletter")
    assert [e.scope for e in suppressions.all()] == ["all"]


def test_a_category_outside_mail_categories_is_invalid_naming_it(
    make_dispatcher, table, stream_record, blastengine, invoke
) -> None:
    dispatcher = make_dispatcher(mail_categories="newsletter")
    raw = table.put(row("c-1", category="promo"))
    invoke(dispatcher, stream_record("INSERT", raw_new=raw))
    assert attr(table.get("c-1"), "error_kind") == "invalid"
    assert attr(table.get("c-1"), "last_error") == (
        "category: 'promo' is not one of MAIL_CATEGORIES (transactional, newsletter)"
    )
    assert blastengine.accepted == []
