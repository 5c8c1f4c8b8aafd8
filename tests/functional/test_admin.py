"""The operator's queries and writes the CLI uses: filtered Scans, the sparse index, re-fire."""

from __future__ import annotations

import pytest

from dispatcher.ops.admin import RowExistsError
from tests.conftest import TABLE_NAMES, image, row


def test_scan_rows_filters_on_status_and_error_kind(admin, table) -> None:
    table.put(row("a", status="failed", error_kind="invalid"))
    table.put(row("b", status="failed", error_kind="config"))
    table.put(row("c"))

    ids = lambda rows: sorted(r.id for r in rows)  # noqa: E731
    assert ids(admin.scan_rows()) == ["a", "b", "c"]
    assert ids(admin.scan_rows(status="failed")) == ["a", "b"]
    assert ids(admin.scan_rows(status="failed", error_kind="config")) == ["b"]


def test_scan_history_filters_on_sent_at(admin, dynamodb) -> None:
    for row_id, sent_at in (("a", "2026-11-01T00:00:00.000Z"), ("b", "2026-11-20T00:00:00.000Z")):
        dynamodb.put_item(
            TableName=TABLE_NAMES["HistoryTable"],
            Item={"id": {"S": row_id}, "sent_at": {"S": sent_at}},
        )

    assert len(list(admin.scan_history())) == 2
    assert [i["id"]["S"] for i in admin.scan_history(since="2026-11-10T00:00:00.000Z")] == ["b"]
    assert [i["id"]["S"] for i in admin.history("b", since="2026-11-21T00:00:00.000Z")] == []


def test_put_row_refuses_an_existing_id_unless_told_to_overwrite(admin, table) -> None:
    admin.put_row(image(row("a")))
    with pytest.raises(RowExistsError, match="'a'"):
        admin.put_row(image(row("a", subject="again")))

    admin.put_row(image(row("a", subject="again")), overwrite=True)
    assert table.get("a")["subject"]["S"] == "again"


def test_waiting_rows_come_from_the_sparse_index(admin, table) -> None:
    table.put(row("d", status="deferred", retry_at="2026-11-24T10:00:00.000Z"))
    table.put(row("f", status="failed"))

    assert [r.id for r in admin.waiting_rows("deferred")] == ["d"]
    assert list(admin.waiting_rows("scheduled")) == []


def test_a_request_botocore_refuses_is_not_reported_as_unreachable(admin, dynamodb) -> None:
    from botocore.exceptions import ParamValidationError

    from dispatcher.storage.dynamodb import StoreUnavailableError

    def refuse(**_: object) -> None:
        raise ParamValidationError(report="injected")

    dynamodb.meta.events.register("before-call.dynamodb.GetItem", refuse)
    with pytest.raises(StoreUnavailableError, match="DynamoDB call failed"):
        admin.get_row("a")


def test_waiting_rows_read_in_batches_keep_the_retry_at_order(admin, table, dynamodb) -> None:
    # GIVEN 250 deferred rows, more than one BatchGetItem holds
    for n in range(250):
        retry_at = f"2026-11-24T10:{n // 60:02}:{n % 60:02}.000Z"
        table.put(row(f"d{n:03}", status="deferred", retry_at=retry_at))
    calls: list[int] = []
    dynamodb.meta.events.register("before-call.dynamodb.BatchGetItem", lambda **_: calls.append(1))

    rows = list(admin.waiting_rows("deferred"))

    # THEN every row comes back, in retry_at order, in three requests rather than 250
    assert [r.id for r in rows] == [f"d{n:03}" for n in range(250)]
    assert len(calls) == 3


def test_waiting_rows_ask_again_for_keys_dynamodb_left_unprocessed(admin, table, dynamodb) -> None:
    table.put(row("a", status="deferred", retry_at="2026-11-24T10:00:00.000Z"))
    table.put(row("b", status="deferred", retry_at="2026-11-24T11:00:00.000Z"))

    def leave_b_unprocessed(parsed: dict, **_: object) -> None:
        if not hasattr(leave_b_unprocessed, "done"):
            leave_b_unprocessed.done = True  # type: ignore[attr-defined]
            table_name = TABLE_NAMES["SendTable"]
            kept = [i for i in parsed["Responses"][table_name] if i["id"]["S"] == "a"]
            parsed["Responses"][table_name] = kept
            parsed["UnprocessedKeys"] = {table_name: {"Keys": [{"id": {"S": "b"}}]}}

    dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", leave_b_unprocessed)

    assert [r.id for r in admin.waiting_rows("deferred")] == ["a", "b"]


def test_a_refire_is_conditional_on_the_row_as_it_was_read(admin, table) -> None:
    # GIVEN a failed row, read by an operator
    table.put(row("a", status="failed", error_kind="invalid"))
    read = admin.get_row("a")

    # WHEN the dispatcher re-stamps it as deferred before the operator's re-fire lands
    table.update("a", status="deferred", retry_at="2026-11-24T10:00:00.000Z")

    # THEN the re-fire changes nothing; read again, it goes through and bumps revision
    assert admin.refire(read) is False
    assert "revision" not in table.get("a")
    assert admin.refire(admin.get_row("a")) is True
    assert table.get("a")["revision"]["N"] == "1"


def test_a_refire_of_a_row_that_is_gone_changes_nothing(admin, table) -> None:
    table.put(row("a", status="failed"))
    read = admin.get_row("a")
    table.delete("a")

    assert admin.refire(read) is False
    assert table.get("a") is None  # never resurrected


def _stamped(row_id: str, when: str, **values) -> dict:
    return row(
        row_id, status="failed", error_kind="invalid", failed_at=when,
        last_error="to: missing", **values,
    )  # fmt: skip


def test_page_rows_pages_failed_rows_newest_first_without_losing_or_repeating_one(
    admin, table
) -> None:
    for n in range(7):
        table.put(_stamped(f"f{n}", f"2026-12-01T10:00:0{n}.000Z"))
    table.put(row("k", status="failed", error_kind="config", failed_at="2026-12-01T11:00:00.000Z"))
    table.put(row("p"))  # pending: not in the index

    seen, token, pages = [], None, 0
    while True:
        page = admin.page_rows(status="failed", error_kind="invalid", token=token, limit=3)
        seen += [i["id"]["S"] for i in page.items]
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert seen == [f"f{n}" for n in reversed(range(7))]
    assert pages == 3
    assert "stamped-by-failed-at" in page.source


def test_page_rows_of_pending_rows_is_a_scan_for_rows_without_status(admin, table) -> None:
    table.put(row("p1", to="someone@shop.example"))
    table.put(row("p2"))
    table.put(_stamped("f", "2026-12-01T10:00:00.000Z"))

    assert {i["id"]["S"] for i in admin.page_rows(status="pending").items} == {"p1", "p2"}
    found = admin.page_rows(recipient="shop.example")
    assert [i["id"]["S"] for i in found.items] == ["p1"]
    assert found.source.startswith("Scan")


def test_a_page_token_that_was_not_made_here_is_refused(admin) -> None:
    from dispatcher.ops.admin import BadPageTokenError

    with pytest.raises(BadPageTokenError):
        admin.page_rows(status="failed", token="not-base64!")
    with pytest.raises(BadPageTokenError):  # valid base64 JSON, but not a key of this list
        admin.page_rows(status="failed", token="eyJ4IjogMX0=")


def test_counts_reads_the_indexes_and_counts_pending_rows(admin, table) -> None:
    table.put(_stamped("a", "2026-12-01T10:00:00.000Z"))
    table.put(_stamped("b", "2026-12-01T09:00:00.000Z"))
    table.put(row("c", status="failed", error_kind="rejected", failed_at="2026-12-01T11:00:00Z"))
    deferred = {"failed_at": "2026-12-01T08:00:00.000Z", "retry_at": "2026-12-01T12:00:00.000Z"}
    table.put(row("d", status="deferred", error_kind="transient", **deferred))
    table.put(row("s", status="scheduled", retry_at="2026-12-05T00:00:00.000Z"))
    table.put(row("p"))

    counts = admin.counts()
    assert dict(counts.failed) == {"invalid": 2, "rejected": 1}
    assert (counts.deferred, counts.scheduled, counts.pending) == (1, 1, 1)
    assert counts.oldest_failed_at == "2026-12-01T09:00:00.000Z"
    assert counts.oldest_deferred_at == "2026-12-01T08:00:00.000Z"


def test_sent_since_counts_history_and_bounces(admin, dynamodb) -> None:
    from datetime import UTC, datetime

    for row_id, sent_at, bounced in (
        ("old", "2026-11-01T00:00:00.000Z", False),
        ("a", "2026-12-01T10:00:00.000Z", False),
        ("b", "2026-12-01T10:30:00.000Z", True),
    ):
        item = {"id": {"S": row_id}, "sent_at": {"S": sent_at}}
        if bounced:
            item["bounce_type"] = {"S": "HARDERROR"}
        dynamodb.put_item(TableName=TABLE_NAMES["HistoryTable"], Item=item)

    counts = admin.sent_since(
        {"day": datetime(2026, 12, 1, tzinfo=UTC), "month": datetime(2026, 11, 1, tzinfo=UTC)}
    )
    assert (counts["day"].sent, counts["day"].bounced, counts["day"].bounce_share) == (2, 1, 0.5)
    assert (counts["month"].sent, counts["month"].bounced) == (3, 1)
    # the times for the chart once, on the widest window
    assert sorted(counts["month"].times) == [
        "2026-11-01T00:00:00.000Z", "2026-12-01T10:00:00.000Z", "2026-12-01T10:30:00.000Z"
    ]  # fmt: skip
    assert counts["day"].times == ()


def test_edit_replaces_the_request_only_if_the_row_is_as_read(admin, table) -> None:
    table.put(_stamped("e", "2026-12-01T10:00:00.000Z", cc=["x@example.com"]))
    loaded = admin.get_row("e")
    assert loaded is not None

    table.update("e", subject="changed by someone else")
    assert not admin.edit(loaded, {"to": {"S": "bob@example.com"}, "subject": {"S": "Hi"}})
    assert table.get("e")["to"]["S"] == "alice@example.com"

    current = admin.get_row("e")
    assert admin.edit(current, {"to": {"S": "bob@example.com"}, "subject": {"S": "Hi"},
                                "text": {"S": "Hello"}})  # fmt: skip
    item = table.get("e")
    assert item["to"]["S"] == "bob@example.com"
    assert "cc" not in item  # dropped from the form, dropped from the row
    assert item["status"]["S"] == "failed"  # bookkeeping stays; the stream's MODIFY sends it


def test_counts_stop_at_their_page_limit_and_say_at_least(
    admin, table, dynamodb, monkeypatch
) -> None:
    import dispatcher.ops.reads

    for n in range(3):
        table.put(_stamped(f"f{n}", f"2026-12-01T10:00:0{n}.000Z"))
        table.put(row(f"p{n}"))
    # one item a page, two pages a count
    monkeypatch.setattr(dispatcher.ops.reads, "MAX_COUNT_PAGES", 2)

    def one_a_page(params, **_) -> None:
        params["Limit"] = 1

    dynamodb.meta.events.register("before-parameter-build.dynamodb.Query", one_a_page)
    dynamodb.meta.events.register("before-parameter-build.dynamodb.Scan", one_a_page)

    counts = admin.counts()
    assert counts.failed["invalid"] == 2
    assert counts.at_least == {"failed", "pending"}
    assert counts.pending <= 2


def test_no_failed_row_of_a_kind_is_an_empty_answer_not_an_empty_batch_read(admin, table) -> None:
    # GIVEN failed rows of another kind only (a hostile probe met botocore's "Invalid length
    # for parameter RequestItems": an empty BatchGetItem)
    table.put(row("other-kind", status="failed", error_kind="invalid",
                  failed_at="2026-12-01T10:00:00.000Z"))  # fmt: skip

    # WHEN every failed row of kind `config` is asked for, whole or as ids
    rows = list(admin.stamped_rows("failed", error_kind="config"))
    ids = list(admin.stamped_ids("failed", error_kind="config"))

    # THEN nothing, and no error
    assert rows == []
    assert ids == []
    assert list(admin.stamped_rows("deferred")) == []
