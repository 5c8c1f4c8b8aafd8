"""The reputation guard: a category's bounce or complaint share over the last 24 hours pauses
its new sends (once enough mail was sent); a person resumes it, and its paused rows go out in
the order they came. Transactional mail answers only to its own shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher.bounces.event import BounceEvent, BounceType
from dispatcher.ops.reputation import NotPausedError, resume
from dispatcher.reputation.guard import ReputationGuard, Thresholds
from tests.conftest import TABLE_NAMES, row
from tests.fakes import FakeClock
from tests.functional.conftest import attr, bounce_ledger, insert, put_history

NOW = datetime(2026, 12, 5, 12, 30, tzinfo=UTC)


@pytest.fixture
def guard(dynamodb: Any) -> ReputationGuard:
    return ReputationGuard(
        table=TABLE_NAMES["ReputationTable"],
        boto3_client=dynamodb,
        thresholds=Thresholds(bounce_rate=0.05, complaint_rate=0.003, min_volume=200),
    )


def test_the_shares_pause_only_past_their_threshold_and_the_minimum_volume(guard) -> None:
    # 199 newsletters, 20 of them bounced: too few mails to judge
    guard.add("newsletter", NOW - timedelta(hours=3), sent=199, bounced=20)
    assert guard.judge("newsletter", NOW).pause is None
    # one more: 20 of 200 (10%) pass 5%
    guard.add("newsletter", NOW, sent=1)
    judged = guard.assess("newsletter", NOW)
    assert judged.pause == (
        "newsletter mail is paused: hard bounces were 10.0% of 200 mails over the last 24 "
        "hours, past PAUSE_BOUNCE_RATE (5.0%)"
    )
    assert guard.paused(("transactional", "newsletter")) == {"newsletter": judged.pause}
    # counts older than the window no longer weigh
    assert guard.judge("newsletter", NOW + timedelta(hours=28)).pause is None
    # a complaint share past half its threshold is a warning, before any pause
    guard.add("notifications", NOW, sent=1000, complained=2)
    assert guard.assess("notifications", NOW).warning is not None
    assert guard.paused(("notifications",)) == {}


def test_a_paused_category_holds_its_rows_and_a_resume_sends_them_in_order(
    make_dispatcher, guard, table, stream_record, invoke, blastengine, admin
) -> None:
    # GIVEN the newsletter paused by its bounces
    guard.add("newsletter", datetime.now(UTC), sent=200, bounced=50)
    guard.assess("newsletter", datetime.now(UTC))
    dispatcher = make_dispatcher(
        mail_categories="newsletter", reputation_table_name=TABLE_NAMES["ReputationTable"]
    )
    # WHEN two newsletters and a password reset come
    records = [
        insert(table, stream_record, row("news-a", category="newsletter")),
        insert(table, stream_record, row("reset-1")),
        insert(table, stream_record, row("news-b", category="newsletter")),
    ]
    invoke(dispatcher, *records)
    # THEN the newsletters stay, paused, with why; the reset is sent
    for row_id in ("news-a", "news-b"):
        kept = table.get(row_id)
        assert (attr(kept, "status"), attr(kept, "error_kind")) == ("paused", "paused")
        assert "PAUSE_BOUNCE_RATE" in attr(kept, "last_error")
    assert [p["subject"] for _, _, p in blastengine.accepted] == ["Hello"]
    assert table.get("reset-1") is None
    # WHEN a person resumes the newsletter
    admin.guard = guard
    done = resume(admin, "newsletter", by="test")
    # THEN its rows are re-fired, oldest first, and sent
    assert sorted(done.refired) == ["news-a", "news-b"]
    refired = [stream_record("MODIFY", raw_new=table.get(i), old={"id": i}) for i in done.refired]
    invoke(dispatcher, *refired)
    assert table.get("news-a") is None
    assert table.get("news-b") is None
    with pytest.raises(NotPausedError):
        resume(admin, "newsletter", by="test")


def test_hard_bounces_of_a_category_count_against_it_and_pause_it(guard, dynamodb) -> None:
    from dispatcher.notify.delivery_events import EventPublisher

    class Bus:
        def __init__(self) -> None:
            self.entries: list[dict[str, Any]] = []

        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.entries.extend(Entries)
            return {"FailedEntryCount": 0, "Entries": [{} for _ in Entries]}

    bus = Bus()
    small = ReputationGuard(
        table=TABLE_NAMES["ReputationTable"], boto3_client=dynamodb,
        thresholds=Thresholds(bounce_rate=0.05, complaint_rate=0.003, min_volume=10),
    )  # fmt: skip
    ledger = bounce_ledger(dynamodb, events=EventPublisher(bus, "bus"), guard=small)
    now = FakeClock().now()
    small.add("newsletter", now, sent=10)
    put_history(dynamodb, delivery_id="77", to="gone@example.com", category="newsletter")
    event = BounceEvent(BounceType.HARDERROR, now.isoformat(), "gone@example.com", "77")
    ledger.apply(event)
    ledger.apply(event)  # redelivered: counted once
    ledger.flush_events()
    assert small.paused(("newsletter",)) != {}
    assert small.judge("newsletter", now).bounced == 1
    paused = [e for e in bus.entries if e["DetailType"] == "Sending Paused"]
    assert len(paused) == 1
    assert '"category":"newsletter"' in paused[0]["Detail"]
