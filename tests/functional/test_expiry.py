"""expires_at: a row not sent by then is never sent, deferred or scheduled rows included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from dispatcher.flow.sweep import Sweeper
from dispatcher.storage.store import Store
from tests.conftest import TABLE_NAMES, row
from tests.fakes import SerializedClient
from tests.functional.conftest import attr, insert


def _sweep(dynamodb: Any, clock: Any) -> Any:
    """One sweeper run over the send table, at the clock's time."""
    store = Store(
        send_table=TABLE_NAMES["SendTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        boto3_client=SerializedClient(dynamodb),
    )
    return Sweeper(store, clock=clock).sweep()


def _scheduled(table: Any, stream_record: Any, row_id: str, send_after: str, expires: str) -> Any:
    return insert(table, stream_record, row(row_id, send_after=send_after, expires_at=expires))


def _at(clock: Any, **delta: float) -> str:
    return (clock.now() + timedelta(**delta)).isoformat()


def test_a_row_past_its_expiry_fails_expired_and_is_never_sent(
    dispatcher, table, stream_record, invoke, blastengine, clock
) -> None:
    invoke(
        dispatcher, insert(table, stream_record, row("exp-1", expires_at=_at(clock, minutes=-1)))
    )

    current = table.get("exp-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "expired")
    assert "not sent by its expires_at" in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_a_row_before_its_expiry_is_sent(
    dispatcher, table, stream_record, invoke, blastengine, clock
) -> None:
    invoke(dispatcher, insert(table, stream_record, row("exp-2", expires_at=_at(clock, hours=1))))

    assert table.get("exp-2") is None
    assert blastengine.route.call_count == 1


def test_bad_expiry_input_is_invalid_naming_the_attribute(
    dispatcher, table, stream_record, invoke, clock
) -> None:
    invoke(dispatcher, insert(table, stream_record, row("exp-3", expires_at="tomorrow")))
    invoke(
        dispatcher,
        _scheduled(table, stream_record, "exp-4", _at(clock, hours=2), _at(clock, hours=1)),
    )

    assert attr(table.get("exp-3"), "error_kind") == "invalid"
    assert "expires_at: 'tomorrow' is not an ISO-8601 timestamp" in attr(
        table.get("exp-3"), "last_error"
    )
    assert "send_after: is after expires_at" in attr(table.get("exp-4"), "last_error")


def test_a_deferred_row_waits_no_longer_than_its_expiry_and_the_sweeper_expires_it(
    dispatcher, table, stream_record, invoke, blastengine, clock, dynamodb
) -> None:
    # GIVEN a row that expires in 10 s, and blastengine answering 503
    blastengine.script.extend([httpx.Response(503)] * 3)
    expires = _at(clock, seconds=10)
    invoke(dispatcher, insert(table, stream_record, row("exp-5", expires_at=expires)))

    # THEN it is deferred, its wait cut to its expiry (the first deferral is 30 s or more)
    current = table.get("exp-5")
    assert attr(current, "status") == "deferred"
    assert attr(current, "retry_at") == dispatcher_iso(expires)

    # WHEN the sweeper runs after the expiry
    clock.advance(11)
    result = _sweep(dynamodb, clock)

    # THEN it is expired, not re-fired: nothing more is sent
    assert (result.expired, result.fired) == (["exp-5"], [])
    current = table.get("exp-5")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "expired")
    assert "retry_at" not in current
    assert blastengine.route.call_count == 3


def test_a_scheduled_row_past_its_expiry_is_expired_by_the_sweeper(
    dispatcher, table, stream_record, invoke, blastengine, clock, dynamodb
) -> None:
    at = _at(clock, seconds=30)
    invoke(dispatcher, _scheduled(table, stream_record, "exp-6", at, at))
    assert attr(table.get("exp-6"), "status") == "scheduled"

    clock.advance(31)
    assert _sweep(dynamodb, clock).expired == ["exp-6"]
    assert blastengine.route.call_count == 0


def test_moving_the_expiry_later_sends_it_as_any_edit_does(
    dispatcher, table, stream_record, invoke, blastengine, clock
) -> None:
    invoke(
        dispatcher, insert(table, stream_record, row("exp-7", expires_at=_at(clock, seconds=-1)))
    )
    failed = table.get("exp-7")
    assert attr(failed, "error_kind") == "expired"

    edited = table.update("exp-7", expires_at=_at(clock, hours=1))
    invoke(dispatcher, stream_record("MODIFY", raw_new=edited, old=failed))

    assert table.get("exp-7") is None
    assert blastengine.route.call_count == 1


def dispatcher_iso(value: str) -> str:
    """An ISO timestamp as the dispatcher writes it (UTC, milliseconds, Z)."""
    from datetime import datetime

    from dispatcher.support.clock import iso_utc

    return iso_utc(datetime.fromisoformat(value))
