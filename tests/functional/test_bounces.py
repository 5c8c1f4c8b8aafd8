"""One path for every bounce: the bounce table, the history item, the suppression list."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.bounces.event import BounceType
from dispatcher.bounces.ledger import BounceLedger
from dispatcher.bounces.payload import BadBounceError, parse_events
from dispatcher.recipients.suppression import SuppressionList
from tests.conftest import TABLE_NAMES
from tests.fakes import FakeClock
from tests.functional.conftest import get_history, put_history


def _body(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": [{"event": e} for e in events]}


def _event(kind: str = "HARDERROR", address: str = "Dead@Example.com", delivery: Any = 1128):
    return {
        "type": kind,
        "datetime": "2026-11-30T10:00:00+09:00",
        "detail": {
            "mailaddress": address,
            "subject": "Your order",
            "error_code": "550",
            "error_message": "user unknown",
            "delivery_id": delivery,
        },
    }


@pytest.fixture
def suppressions(dynamodb: Any) -> SuppressionList:
    return SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb)


@pytest.fixture
def ledger(dynamodb: Any, suppressions: SuppressionList) -> BounceLedger:
    return BounceLedger(
        bounce_table=TABLE_NAMES["BounceTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        suppressions=suppressions,
        boto3_client=dynamodb,
        clock=FakeClock(),
    )


def test_a_hard_bounce_reaches_the_history_item_and_the_suppression_list(
    ledger, suppressions, dynamodb
) -> None:
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    [event] = parse_events(_body(_event()))

    applied = ledger.apply(event)

    assert (applied.new, applied.joined) == (True, True)
    item = get_history(dynamodb)
    assert item["bounce_type"] == {"S": "HARDERROR"}
    assert item["bounced_at"] == {"S": "2026-11-30T10:00:00+09:00"}
    assert (item["bounce_code"], item["bounce_address"]) == (
        {"S": "550"},
        {"S": "dead@example.com"},
    )
    assert item["bounced_addresses"] == {"SS": ["dead@example.com"]}
    entry = suppressions.find(["dead@example.com"])["dead@example.com"]
    assert (entry.reason, entry.code, entry.delivery_id) == ("HARDERROR", "550", "1128")


def test_the_same_event_twice_changes_nothing(ledger, dynamodb) -> None:
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    [event] = parse_events(_body(_event()))
    ledger.apply(event)
    before = (get_history(dynamodb), list(ledger.recent()), dynamodb.scan(TableName="suppression"))

    again = ledger.apply(event)

    assert again.new is False
    after = (get_history(dynamodb), list(ledger.recent()), dynamodb.scan(TableName="suppression"))
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2]["Items"] == before[2]["Items"]


def test_a_soft_error_is_recorded_and_never_suppresses(ledger, suppressions, dynamodb) -> None:
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    [event] = parse_events(_body(_event("SOFTERROR")))

    ledger.apply(event)

    assert get_history(dynamodb)["bounce_type"] == {"S": "SOFTERROR"}
    assert suppressions.find(["dead@example.com"]) == {}


def test_a_drop_suppresses_like_a_hard_error(ledger, suppressions, dynamodb) -> None:
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    ledger.apply(parse_events(_body(_event("DROP")))[0])

    assert suppressions.find(["dead@example.com"])["dead@example.com"].reason == "DROP"


def test_an_orphan_is_kept_and_joined_once_its_history_item_exists(
    ledger, suppressions, dynamodb
) -> None:
    # GIVEN a bounce that arrives before its history item
    [event] = parse_events(_body(_event(delivery=77)))
    applied = ledger.apply(event)
    assert applied.joined is False
    [orphan] = list(ledger.recent())
    assert orphan["orphan"] == {"S": "1"}
    # an orphan suppresses nothing: nothing says the address was one the dispatcher mailed
    assert suppressions.find(["dead@example.com"]) == {}

    # WHEN the history item appears and orphans are joined
    put_history(dynamodb, delivery_id="77", to="dead@example.com")
    assert ledger.join_orphans() == 1

    # THEN the history item has the bounce, and the event is an orphan no more
    assert get_history(dynamodb)["bounce_type"] == {"S": "HARDERROR"}
    [joined] = list(ledger.recent())
    assert "orphan" not in joined
    assert "expires_at" not in joined  # a joined event is kept
    assert joined["joined_to"] == {"S": "order-1"}
    assert "dead@example.com" in suppressions.find(["dead@example.com"])
    assert ledger.join_orphans() == 0


def test_recent_filters_on_type(ledger) -> None:
    for kind, address in (("HARDERROR", "a@example.com"), ("SOFTERROR", "b@example.com")):
        ledger.apply(parse_events(_body(_event(kind, address)))[0])

    assert [i["address"]["S"] for i in ledger.recent(kind=BounceType.SOFTERROR)] == [
        "b@example.com"
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not a dict", "must be {"),
        ({"events": []}, "no events"),
        ({"events": [{"event": {**_event(), "type": "OPENED"}}]}, "type must be one of"),
        ({"events": [{"event": {**_event(), "datetime": "yesterday"}}]}, "datetime"),
        ({"events": [{"event": {**_event(), "detail": {"mailaddress": "x"}}}]}, "mailaddress"),
        ({"events": [{"event": {**_event(), "detail": {"mailaddress": "a@b.jp"}}}]}, "delivery_id"),
        ({"events": [{"nope": 1}]}, "no event object"),
        ({"events": [{"event": _event()}] * 501}, "over 500"),
    ],
)
def test_a_malformed_body_is_refused_without_repeating_it(body: Any, reason: str) -> None:
    with pytest.raises(BadBounceError) as raised:
        parse_events(body)
    assert reason in str(raised.value)
    assert "Dead@Example.com" not in str(raised.value)


class _MailLog:
    """blastengine's mail results, as the catch-up reads them (one page)."""

    def __init__(self, *results: dict[str, Any]) -> None:
        self.results = list(results)

    def mail_results(self, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return self.results


def test_the_catch_up_counts_the_bounces_it_records_once(ledger, dynamodb) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher.bounces.catch_up import Reconciler
    from dispatcher.support.observability import metrics

    # GIVEN a bounce whose webhook never came, in the provider's mail log
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    log = _MailLog(
        {
            "delivery_id": 1128,
            "email": "dead@example.com",
            "status": "HARDERROR",
            "updated_time": "2026-11-30T10:00:00+09:00",
            "last_response_code": "550",
        }
    )
    reconciler = Reconciler(provider=log, ledger=ledger)  # type: ignore[arg-type]
    now = datetime(2026, 11, 30, 2, tzinfo=UTC)
    metrics.clear_metrics()
    try:
        # WHEN the catch-up runs twice over the same window
        first = reconciler.catch_up(now - timedelta(hours=2), now)
        second = reconciler.catch_up(now - timedelta(hours=2), now)

        # THEN the bounce is recorded once, and counted once in Bounced, as every path counts
        assert (first.applied, second.applied) == (1, 0)
        assert metrics.metric_set["Bounced"]["Value"] == [1.0]
        assert metrics.metric_set["Bounced_HARDERROR"]["Value"] == [1.0]
    finally:
        metrics.clear_metrics()


def _history_to(dynamodb: Any, delivery_id: str, to: str, *copies: str) -> None:
    """A history item as the dispatcher writes it now: its recipients kept as digests."""
    from dispatcher.model.row import recipient_digest

    put_history(dynamodb, delivery_id=delivery_id, to=to)
    dynamodb.update_item(
        TableName=TABLE_NAMES["HistoryTable"],
        Key={"id": {"S": "order-1"}, "sent_at": {"S": "2026-11-30T00:59:00.000Z"}},
        UpdateExpression="SET recipient_digests = :d",
        ExpressionAttributeValues={
            ":d": {"SS": sorted({recipient_digest(a) for a in (to, *copies)})}
        },
    )


def test_a_bounce_for_an_address_the_delivery_never_went_to_suppresses_nothing(
    ledger, suppressions, dynamodb
) -> None:
    # GIVEN delivery 1128 went to bob (and carol in cc)
    _history_to(dynamodb, "1128", "bob@example.com", "carol@example.com")

    # WHEN someone holding the webhook's URL posts a bounce of that delivery for another address
    [forged] = parse_events(_body(_event(address="ceo@example.com")))
    applied = ledger.apply(forged)

    # THEN the address is not suppressed and the history is untouched: an orphan, kept
    assert applied.joined is False
    assert suppressions.find(["ceo@example.com"]) == {}
    assert "bounce_type" not in get_history(dynamodb)
    # while a bounce of the cc recipient, whom the mail did go to, applies
    [real] = parse_events(_body(_event(address="Carol@Example.com")))
    assert ledger.apply(real).joined is True
    assert "carol@example.com" in suppressions.find(["carol@example.com"])


def test_orphans_expire_and_never_hold_later_joins_back(ledger, dynamodb) -> None:
    # GIVEN 600 orphans that will never join (more than one run reads)
    for n in range(600):
        ledger.apply(parse_events(_body(_event(address=f"x{n}@example.com", delivery=9000 + n)))[0])
    # each expires: the bounce table's TTL takes it after the retention
    [first, *_] = list(ledger.recent())
    expires = int(first["expires_at"]["N"])
    assert expires - FakeClock().now().timestamp() == 14 * 24 * 3600
    # AND, a minute later, one more orphan whose history item then appears
    ledger._clock.advance(60)
    ledger.apply(parse_events(_body(_event(delivery=77)))[0])
    put_history(dynamodb, delivery_id="77", to="dead@example.com")

    # WHEN orphans are joined
    joined = ledger.join_orphans()

    # THEN the newest are read first: the real one joins despite the 600 before it
    assert joined == 1
    assert get_history(dynamodb)["bounce_type"] == {"S": "HARDERROR"}


def test_a_replayed_bounce_does_not_undo_an_operators_lifting(
    ledger, suppressions, dynamodb
) -> None:
    # GIVEN a hard bounce that suppressed dead@, then an operator lifted it
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    [event] = parse_events(_body(_event()))
    ledger.apply(event)
    assert suppressions.remove("dead@example.com", now="2026-12-01T00:00:00.000Z")
    assert suppressions.find(["dead@example.com"]) == {}
    assert [e.address for e in suppressions.all()] == []

    # WHEN the same POST is replayed (by blastengine's retry, or by anyone with the URL)
    ledger.apply(event)

    # THEN the address stays lifted; a bounce that happens after the lifting suppresses again
    assert suppressions.find(["dead@example.com"]) == {}
    later = _event()
    later["datetime"] = "2026-12-02T10:00:00+09:00"
    ledger.apply(parse_events(_body(later))[0])
    assert "dead@example.com" in suppressions.find(["dead@example.com"])
    # and lifting what is not suppressed says so
    assert not suppressions.remove("nobody@example.com", now="2026-12-03T00:00:00.000Z")


@pytest.mark.parametrize(
    ("detail", "words"),
    [
        ({"delivery_id": "9" * 21}, "at most 20 digits"),
        ({"delivery_id": ""}, "delivery_id"),
    ],
)
def test_every_field_of_a_bounce_is_bounded(detail: dict[str, Any], words: str) -> None:
    event = _event()
    event["detail"] = {**event["detail"], **detail}
    with pytest.raises(BadBounceError, match=words):
        parse_events(_body(event))
    long_time = _event()
    long_time["datetime"] = "2026-11-30T10:00:00+09:00" + " " * 40
    with pytest.raises(BadBounceError, match="datetime"):
        parse_events(_body(long_time))


def test_the_catch_up_moves_delivery_statuses_from_the_mail_log(ledger, dynamodb) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher.bounces.catch_up import Reconciler

    # GIVEN two sent mails, accepted, and the mail log's results for them
    put_history(dynamodb, delivery_id="1128", to="ok@example.com", delivery_status="accepted")
    put_history(
        dynamodb, row_id="order-2", delivery_id="1129", to="slow@example.com",
        delivery_status="accepted",
    )  # fmt: skip
    log = _MailLog(
        {"delivery_id": 1128, "email": "ok@example.com", "status": "SENT",
         "delivery_time": "2026-11-30T10:00:01+09:00", "last_response_code": "250",
         "last_response_message": "OK"},
        {"delivery_id": 1129, "email": "slow@example.com", "status": "RETRY",
         "delivery_time": "2026-11-30T10:00:02+09:00"},
        {"delivery_id": 4242, "email": "elsewhere@example.com", "status": "SENT",
         "delivery_time": "2026-11-30T10:00:03+09:00"},
    )  # fmt: skip
    now = datetime(2026, 11, 30, 2, tzinfo=UTC)

    # WHEN the catch-up reads them
    result = Reconciler(provider=log, ledger=ledger).catch_up(now - timedelta(hours=2), now)  # type: ignore[arg-type]

    # THEN the first is delivered, the second delayed, the third (not ours) made no item
    assert result.statuses == 2
    assert get_history(dynamodb)["delivery_status"] == {"S": "delivered"}
    assert get_history(dynamodb)["delivery_detail"] == {"S": "250 OK"}
    second = get_history(dynamodb, row_id="order-2")
    assert second["delivery_status"] == {"S": "delayed"}
    assert len(dynamodb.scan(TableName=TABLE_NAMES["HistoryTable"])["Items"]) == 2
