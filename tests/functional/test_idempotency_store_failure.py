"""A send whose idempotency record cannot be saved still finishes its bookkeeping."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tests.conftest import row
from tests.fakes import throttle_first_call
from tests.functional.conftest import failed_ids


def test_sent_but_idempotency_save_failed_still_moves_the_row_and_never_resends(
    dispatcher, dynamodb, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN saving the idempotency record's result (its UpdateItem) fails once
    record = stream_record("INSERT", raw_new=table.put(row("r1")))
    failures: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if params["TableName"] == "idempotency" and not failures:
            failures.append(1)
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "x"}}, "UpdateItem"
            )

    dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", hook)

    # WHEN the record is processed, and then redelivered
    first = invoke(dispatcher, record)
    second = invoke(dispatcher, record)

    # THEN the mail went out once, and the row was moved on the first pass
    assert failures == [1]
    assert failed_ids(first) == []
    assert failed_ids(second) == []
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None
    assert len(table.history("r1")) == 1


def test_sent_then_both_saves_failed_is_replayed_not_resent_on_redelivery(
    dispatcher, dynamodb, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN after the send, Powertools' save of the idempotency record fails, one retry of
    # it fails too, and the history transaction is throttled
    record = stream_record("INSERT", raw_new=table.put(row("r1")))
    saves: list[int] = []

    def fail_saves(params: dict[str, Any], **_: Any) -> None:
        if params["TableName"] == "idempotency" and len(saves) < 2:
            saves.append(1)
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
                "UpdateItem",
            )

    dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", fail_saves)
    transactions = throttle_first_call(dynamodb, "TransactWriteItems")

    # WHEN the record is processed (and left for retry), then redelivered
    first = invoke(dispatcher, record)
    second = invoke(dispatcher, record)

    # THEN the redelivery replayed the saved result: one mail, the row moved to history
    assert (len(saves), len(transactions)) == (2, 1)
    assert len(failed_ids(first)) == 1
    assert failed_ids(second) == []
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None
    assert len(table.history("r1")) == 1
