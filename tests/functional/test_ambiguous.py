"""A send whose answer never came is settled by asking blastengine, never repeated blindly
(DESIGN.md, "When the provider's answer never came"; README, the same section)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatcher.model.unsettled import Unsettled
from tests.conftest import TABLE_NAMES, row
from tests.functional.conftest import attr, failed_ids, insert


def _hang(request: httpx.Request) -> httpx.Response:
    """A request blastengine never answered, nor took."""
    raise httpx.ReadTimeout("timed out (test)", request=request)


def _refire(table: Any, stream_record: Any, row_id: str) -> dict[str, Any]:
    """What the sweeper does to a due row: bump its revision (a MODIFY on the stream)."""
    current = table.get(row_id)
    revision = int(attr(current, "revision") or 0) + 1
    return stream_record("MODIFY", raw_new=table.update(row_id, revision=revision), old=current)


def test_an_accepted_mail_whose_answer_never_came_is_not_sent_again(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN blastengine takes the mail, but its answer never reaches the dispatcher
    blastengine.script.append(blastengine.accept_then_hang)
    record = insert(table, stream_record, row("amb-1"))

    # WHEN the stream delivers the row
    response = invoke(dispatcher, record)

    # THEN the request is not retried: the row waits for the look-up, saying why
    assert failed_ids(response) == []
    assert blastengine.route.call_count == 1
    current = table.get("amb-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("deferred", "ambiguous")
    assert "may have taken the mail" in attr(current, "last_error")
    marker = Unsettled.from_attribute(current["unsettled"])
    assert marker is not None
    assert marker.to == "alice@example.com"
    assert marker.opened_at <= marker.closed_at
    assert [r.outcome for r in dispatcher.last_results] == ["deferred"]
    assert dispatcher.last_results[0].ambiguous

    # WHEN Lambda redelivers the same record (its bookkeeping had failed, say)
    invoke(dispatcher, record)

    # THEN the idempotency record replays "may have been taken": still no second request
    assert blastengine.route.call_count == 1

    # WHEN the sweeper re-fires it before the provider's look-up can be trusted
    clock.advance(5)
    invoke(dispatcher, _refire(table, stream_record, "amb-1"))

    # THEN nothing is asked nor sent; it waits until the delay is over
    assert blastengine.results.call_count == 0
    assert blastengine.route.call_count == 1
    assert attr(table.get("amb-1"), "status") == "deferred"

    # WHEN it is re-fired after the delay
    clock.advance(dispatcher.settings.lookup_delay_seconds)
    invoke(dispatcher, _refire(table, stream_record, "amb-1"))

    # THEN the look-up finds the mail: the row is moved to history with that delivery id,
    # confirmed by look-up, and still only one mail went out
    assert blastengine.route.call_count == 1
    assert table.get("amb-1") is None
    [history] = table.history("amb-1")
    assert attr(history, "delivery_id") == "1"
    assert attr(history, "confirmed_by") == "lookup"
    assert [r.outcome for r in dispatcher.last_results] == ["confirmed"]


def test_a_mail_never_taken_is_sent_after_the_lookup_found_nothing(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN a request that hung without blastengine taking the mail
    blastengine.script.append(_hang)
    invoke(dispatcher, insert(table, stream_record, row("amb-2")))
    assert attr(table.get("amb-2"), "error_kind") == "ambiguous"

    # WHEN it is re-fired after the look-up delay
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    invoke(dispatcher, _refire(table, stream_record, "amb-2"))

    # THEN blastengine had nothing, so it is sent: one mail in all
    assert blastengine.results.call_count == 1
    assert len(blastengine.accepted) == 1
    assert table.get("amb-2") is None
    [history] = table.history("amb-2")
    assert "confirmed_by" not in history
    assert attr(history, "attempts") == "2"


def test_a_failing_lookup_keeps_the_row_waiting_then_fails_it_with_the_question(
    make_dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN an unanswered send, and blastengine's look-ups answering 503 from then on
    dispatcher = make_dispatcher(max_attempts=3)
    blastengine.script.append(blastengine.accept_then_hang)
    invoke(dispatcher, insert(table, stream_record, row("amb-3")))
    blastengine.lookups_down = True

    # WHEN it is re-fired after the delay
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    invoke(dispatcher, _refire(table, stream_record, "amb-3"))

    # THEN it is not sent on a guess: deferred again, one attempt spent on the look-up
    current = table.get("amb-3")
    assert (attr(current, "status"), attr(current, "attempts")) == ("deferred", "2")
    assert "could not learn whether blastengine took the mail" in attr(current, "last_error")
    assert dispatcher.last_results[0].lookup_failed
    assert blastengine.route.call_count == 1

    # WHEN the look-up keeps failing until the attempt limit
    clock.advance(3600)
    invoke(dispatcher, _refire(table, stream_record, "amb-3"))

    # THEN the row fails, saying what is not known and what to do; nothing was resent, and
    # the marker stays, so a re-fire once blastengine is back looks it up again
    current = table.get("amb-3")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "ambiguous")
    assert "did not send it again" in attr(current, "last_error")
    assert "unsettled" in current
    assert blastengine.route.call_count == 1

    blastengine.lookups_down = False
    invoke(dispatcher, _refire(table, stream_record, "amb-3"))
    assert table.get("amb-3") is None
    assert attr(table.history("amb-3")[0], "confirmed_by") == "lookup"
    assert blastengine.route.call_count == 1


def test_a_connection_refused_is_retried_at_once_not_looked_up(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN blastengine refusing the first connection (the request never left)
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused (test)", request=request)

    blastengine.script.append(refuse)

    # WHEN a row is sent
    invoke(dispatcher, insert(table, stream_record, row("refused-1")))

    # THEN it is retried in the same invocation, with no look-up
    assert blastengine.route.call_count == 2
    assert blastengine.results.call_count == 0
    assert table.get("refused-1") is None


def test_personalised_content_matches_whichever_way_blastengine_keeps_it(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN a personalised mail taken without an answer, which blastengine keeps substituted
    def accept_substituted(request: httpx.Request) -> httpx.Response:
        blastengine.accept(request)
        _, _, payload = blastengine.accepted[-1]
        payload["subject"] = payload["subject"].replace("__name__", "Alice")
        payload["text_part"] = payload["text_part"].replace("__name__", "Alice")
        raise httpx.RemoteProtocolError("server disconnected (test)", request=request)

    blastengine.script.append(accept_substituted)
    values = row(
        "amb-4", subject="Hi __name__", text="Dear __name__\r\n", insert_code={"name": "Alice"}
    )
    invoke(dispatcher, insert(table, stream_record, values))

    # WHEN it is looked up after the delay
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    invoke(dispatcher, _refire(table, stream_record, "amb-4"))

    # THEN the substituted copy is recognised as this mail
    assert table.get("amb-4") is None
    assert attr(table.history("amb-4")[0], "confirmed_by") == "lookup"
    assert blastengine.route.call_count == 1


def test_an_identical_mail_to_the_same_address_from_another_row_counts_as_taken(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    """The limit README states: two identical mails to one address in one window cannot be
    told apart, and the dispatcher then errs towards sending one mail too few."""

    # GIVEN row A's mail was answered, and row B (same address, subject, body) was unanswered
    # and never taken
    invoke(dispatcher, insert(table, stream_record, row("twin-a")))
    blastengine.script.append(_hang)
    invoke(dispatcher, insert(table, stream_record, row("twin-b")))

    # WHEN B is looked up
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    invoke(dispatcher, _refire(table, stream_record, "twin-b"))

    # THEN A's delivery is taken for B's: B is not sent (no duplicate, one mail short)
    assert len(blastengine.accepted) == 1
    assert attr(table.history("twin-b")[0], "delivery_id") == "1"


def test_a_row_edited_after_its_mail_was_taken_sends_the_new_content_and_keeps_both(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN an unanswered send that blastengine took
    blastengine.script.append(blastengine.accept_then_hang)
    invoke(dispatcher, insert(table, stream_record, row("edit-1", subject="First")))
    waiting = table.get("edit-1")

    # WHEN a person edits the row into another mail after the delay
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    edited = table.update("edit-1", subject="Corrected")
    invoke(dispatcher, stream_record("MODIFY", raw_new=edited, old=waiting))

    # THEN the first mail is in history, confirmed by look-up, and the new one is sent
    assert [p["subject"] for _, _, p in blastengine.accepted] == ["First", "Corrected"]
    assert table.get("edit-1") is None
    history = sorted(table.history("edit-1"), key=lambda h: attr(h, "delivery_id"))
    assert [attr(h, "confirmed_by") for h in history] == ["lookup", None]
    assert [attr(h, "subject") for h in history] == ["First", "Corrected"]


def test_a_refire_that_keeps_the_content_sends_after_the_lookup_found_nothing(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    # GIVEN an unanswered send never taken, and a person who re-fires the row by removing
    # its status (same content, so the same idempotency key as the unanswered send)
    blastengine.script.append(_hang)
    invoke(dispatcher, insert(table, stream_record, row("same-1")))
    waiting = table.get("same-1")
    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    refired = dict(waiting)
    refired.pop("status")
    table.put_raw(refired)

    # WHEN that MODIFY arrives
    invoke(dispatcher, stream_record("MODIFY", raw_new=refired, old=waiting))

    # THEN the look-up's "not taken" is not overruled by the replayed "may have been taken"
    assert blastengine.results.call_count == 1
    assert len(blastengine.accepted) == 1
    assert table.get("same-1") is None


class _Killed(BaseException):
    """Stands in for SIGKILL: no ``except Exception`` sees it, so nothing is cleaned up."""


def test_a_send_the_sweeper_refires_underneath_answers_the_refire_once(
    dispatcher, table, stream_record, blastengine, invoke, clock
) -> None:
    """The fault suite met this under load: a row waiting for its look-up was re-fired by
    the sweeper while a redelivery of its first record (the look-up done, nothing found) was
    sending it. The send's transaction failed (the row had changed) and the row was kept; its
    re-fired record then found that very mail by look-up and recorded it a second time. Had
    the mail fallen outside the look-up's window, it would have been sent again."""

    # GIVEN a first try that died before the request, and a redelivery that met its record
    # in progress: the row waits for a look-up
    def die(request: httpx.Request) -> httpx.Response:
        raise _Killed

    record = insert(table, stream_record, row("race-1"))
    blastengine.script.append(die)
    with pytest.raises(_Killed):
        invoke(dispatcher, record)
    invoke(dispatcher, record)
    assert attr(table.get("race-1"), "error_kind") == "ambiguous"

    # WHEN, after the delay, the first record is redelivered again, and the sweeper re-fires
    # the row while that delivery is sending it
    refired: dict[str, Any] = {}

    def sweeper_fires(**_: Any) -> None:
        if refired:
            return
        before = table.get("race-1")
        table.client.update_item(
            TableName=TABLE_NAMES["SendTable"],
            Key={"id": {"S": "race-1"}},
            UpdateExpression="ADD #r :one SET #f = :now",
            ExpressionAttributeNames={"#r": "revision", "#f": "fired_at"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": "2026-11-24T09:11Z"}},
        )
        refired["record"] = stream_record("MODIFY", raw_new=table.get("race-1"), old=before)

    clock.advance(dispatcher.settings.lookup_delay_seconds + 1)
    table.client.meta.events.register("before-call.dynamodb.TransactWriteItems", sweeper_fires)
    invoke(dispatcher, record)
    table.client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", sweeper_fires)

    # THEN the mail that went out answered the re-fire: the row is gone, and its re-fired
    # record finds nothing to do
    assert table.get("race-1") is None
    invoke(dispatcher, refired["record"])
    assert len(blastengine.accepted) == 1
    [history] = table.history("race-1")
    assert attr(history, "delivery_id") == "1"


def test_a_person_editing_the_row_while_it_is_sent_is_not_answered_by_that_send(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a person edits the row's subject while its first send is in flight
    record = insert(table, stream_record, row("edit-in-flight", subject="Draft"))

    def edit_then_answer(request: httpx.Request) -> httpx.Response:
        table.update("edit-in-flight", subject="Final")
        return blastengine.accept(request)

    blastengine.script.append(edit_then_answer)
    invoke(dispatcher, record)

    # THEN the row is kept for its own record to send the new content
    kept = table.get("edit-in-flight")
    assert kept is not None
    assert attr(kept, "subject") == "Final"
