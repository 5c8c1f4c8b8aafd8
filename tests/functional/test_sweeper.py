"""The sweeper: due rows re-fired through the sparse index, once, never by a Scan."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from dispatcher.flow.sweep import LEASE_SECONDS, Sweeper
from dispatcher.storage.store import Store
from tests.conftest import TABLE_NAMES, row
from tests.fakes import FakeClock, SerializedClient
from tests.functional.conftest import attr

NOW = "2026-11-24T09:00:00.000Z"  # FakeClock's start
PAST = "2026-11-24T08:59:59.999Z"
FUTURE = "2026-11-24T09:00:00.001Z"


@pytest.fixture
def calls(dynamodb: Any) -> dict[str, int]:
    """Counts DynamoDB calls by operation, to prove no Scan is ever issued."""
    counted: dict[str, int] = {}

    def count(model: Any, **_: Any) -> None:
        counted[model.name] = counted.get(model.name, 0) + 1

    dynamodb.meta.events.register("before-call.dynamodb.*", count)
    return counted


@pytest.fixture
def store(dynamodb: Any) -> Store:
    return Store(
        send_table=TABLE_NAMES["SendTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        boto3_client=SerializedClient(dynamodb),
    )


def _waiting(table: Any, row_id: str, status: str, retry_at: str, **extra: Any) -> None:
    table.put(row(row_id, status=status, retry_at=retry_at, attempts=3, **extra))


def test_due_deferred_rows_are_refired_and_others_are_not(table, store, calls) -> None:
    # GIVEN deferred rows due and not yet due, a failed row and a fresh row
    _waiting(table, "due", "deferred", PAST)
    _waiting(table, "due-now", "deferred", NOW)
    _waiting(table, "later", "deferred", FUTURE)
    table.put(row("failed", status="failed", error_kind="rejected"))
    table.put(row("fresh"))

    # WHEN the sweeper runs at 09:00
    result = Sweeper(store, clock=FakeClock()).sweep()

    # THEN only the due rows got a revision bump (and a lease), the others are untouched
    assert sorted(result.fired) == ["due", "due-now"]
    for row_id in ("due", "due-now"):
        current = table.get(row_id)
        assert attr(current, "revision") == "1"
        assert attr(current, "retry_at") > NOW
        assert attr(current, "status") == "deferred"
    for row_id in ("later", "failed", "fresh"):
        assert "revision" not in table.get(row_id)
    assert "Scan" not in calls
    assert calls["Query"] >= 2


def test_scheduled_rows_fire_when_send_after_has_come(table, store, calls) -> None:
    _waiting(table, "digest-due", "scheduled", PAST, send_after="2026-11-24T17:59:00+09:00")
    _waiting(
        table,
        "digest-later",
        "scheduled",
        "2026-11-24T10:00:00.000Z",
        send_after="2026-11-24T19:00:00+09:00",
    )

    result = Sweeper(store, clock=FakeClock()).sweep()

    assert result.fired == ["digest-due"]
    assert "revision" not in table.get("digest-later")
    assert "Scan" not in calls


def test_a_row_is_fired_once_however_many_sweepers_find_it(table, store) -> None:
    # GIVEN two sweepers that both found the same due row
    _waiting(table, "r1", "deferred", PAST)
    [found] = list(store.due_rows("deferred", NOW))
    [found_again] = list(store.due_rows("deferred", NOW))

    # WHEN both try to fire it
    fired = [
        store.refire(found, now=NOW, lease_until=FUTURE),
        store.refire(found_again, now=NOW, lease_until=FUTURE),
    ]

    # THEN exactly one succeeds
    assert fired == [True, False]
    assert attr(table.get("r1"), "revision") == "1"


def test_concurrent_sweeps_fire_each_due_row_exactly_once(table, store) -> None:
    for i in range(40):
        _waiting(table, f"r{i:02}", "deferred", PAST)
    results = []

    def run() -> None:
        results.append(Sweeper(store, clock=FakeClock()).sweep())

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    fired = [row_id for result in results for row_id in result.fired]
    assert sorted(fired) == [f"r{i:02}" for i in range(40)]
    assert {attr(table.get(f"r{i:02}"), "revision") for i in range(40)} == {"1"}


def test_a_row_edited_since_it_was_found_is_left_to_its_own_modify(table, store) -> None:
    _waiting(table, "r1", "deferred", PAST)
    [found] = list(store.due_rows("deferred", NOW))
    table.update("r1", subject="Edited by a person", retry_at="2026-11-24T09:30:00.000Z")

    assert store.refire(found, now=NOW, lease_until=FUTURE) is False
    assert "revision" not in table.get("r1")


def test_a_run_is_bounded_and_the_next_run_goes_on(table, store) -> None:
    for i in range(5):
        _waiting(table, f"r{i}", "deferred", PAST)

    first = Sweeper(store, clock=FakeClock(), max_rows=3).sweep()
    second = Sweeper(store, clock=FakeClock(), max_rows=3).sweep()

    assert (len(first.fired), first.truncated) == (3, True)
    assert (len(second.fired), second.truncated) == (2, False)


def test_due_rows_are_paginated(table, store) -> None:
    for i in range(7):
        _waiting(table, f"r{i}", "deferred", PAST)

    assert len(list(store.due_rows("deferred", NOW, page_size=2))) == 7


def test_a_fired_row_is_hidden_from_the_next_sweep_while_it_is_sent(table, store) -> None:
    _waiting(table, "r1", "deferred", PAST)
    clock = FakeClock()
    Sweeper(store, clock=clock).sweep()

    clock.advance(60)  # the next scheduled run
    assert Sweeper(store, clock=clock).sweep().fired == []
    clock.advance(LEASE_SECONDS)  # the dispatcher never got to it: fire again
    assert Sweeper(store, clock=clock).sweep().fired == ["r1"]


def test_a_deferred_row_is_sent_after_the_sweeper_refires_it(
    dispatcher, table, store, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN a row deferred by a provider outage
    inserted = table.put(row("r1"))
    blastengine.script.extend([httpx.Response(503)] * 3)
    invoke(dispatcher, stream_record("INSERT", raw_new=inserted))
    deferred = table.get("r1")
    assert attr(deferred, "status") == "deferred"

    # WHEN its retry_at has passed and the sweeper runs
    clock.advance(3600)
    assert Sweeper(store, clock=clock).sweep().fired == ["r1"]
    refired = table.get("r1")

    # THEN the MODIFY the sweeper caused sends it, counting on from the attempts it had
    invoke(
        dispatcher,
        stream_record("MODIFY", raw_new=refired)
        | {
            "dynamodb": {
                **stream_record("MODIFY", raw_new=refired)["dynamodb"],
                "OldImage": deferred,
            }
        },
    )
    assert table.get("r1") is None
    [history] = table.history("r1")
    assert attr(history, "attempts") == "4"


def test_due_rows_are_read_whole_a_hundred_at_a_time(table, store, calls) -> None:
    # GIVEN 150 due deferred rows (the index holds their keys only)
    for n in range(150):
        _waiting(table, f"d{n:03}", "deferred", PAST)

    # WHEN the sweeper runs
    result = Sweeper(store, clock=FakeClock()).sweep()

    # THEN each is fired, its expiry seen through two BatchGetItems, not 150 GetItems
    assert len(result.fired) == 150
    assert calls.get("BatchGetItem") == 2
    assert "GetItem" not in calls
