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
    assert "dead@example.com" in suppressions.find(["dead@example.com"])  # suppressed anyway

    # WHEN the history item appears and orphans are joined
    put_history(dynamodb, delivery_id="77", to="dead@example.com")
    assert ledger.join_orphans() == 1

    # THEN the history item has the bounce, and the event is an orphan no more
    assert get_history(dynamodb)["bounce_type"] == {"S": "HARDERROR"}
    [joined] = list(ledger.recent())
    assert "orphan" not in joined
    assert joined["joined_to"] == {"S": "order-1"}
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
