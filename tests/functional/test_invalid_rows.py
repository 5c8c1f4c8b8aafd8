"""Malformed rows end failed/invalid with a readable reason, never reaching the API."""

from __future__ import annotations

from typing import Any

from tests.conftest import row
from tests.corpus import storable_malformed_rows
from tests.functional.conftest import attr, failed_ids


def test_every_malformed_row_is_kept_failed_invalid_with_zero_api_calls(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN a batch of malformed rows with one valid row among them (DynamoDB cannot store
    # invalid UTF-8 nor items over 400 KB, so those cases live in the unit tests only)
    cases = storable_malformed_rows()
    assert len(cases) >= 40
    records = []
    for _, raw, _ in cases:
        table.put_raw(raw)
        records.append(stream_record("INSERT", raw_new=raw))
    valid = table.put(row("valid-1"))
    records.insert(len(records) // 2, stream_record("INSERT", raw_new=valid))

    # WHEN the batch is processed
    response = invoke(dispatcher, *records)

    # THEN each malformed row stays, failed/invalid, with a reason naming the attribute
    assert failed_ids(response) == []
    for case, _, attribute in cases:
        current = table.get(case)
        assert attr(current, "status") == "failed", case
        assert attr(current, "error_kind") == "invalid", case
        assert f"{attribute}:" in attr(current, "last_error"), case
        assert attr(current, "attempts") == "0", case
    # and only the valid row reached the provider
    assert [p["to"] for p in blastengine.payloads] == ["alice@example.com"]
    assert table.get("valid-1") is None


def test_the_invalid_rows_echo_is_skipped_and_fixing_the_row_sends_it(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    broken = row("r1", to="alice@")
    record = stream_record("INSERT", raw_new=table.put(broken))
    invoke(dispatcher, record)
    stamped = table.get("r1")

    # the stamp's own MODIFY comes back: skipped, nothing re-stamped
    echo = stream_record("MODIFY", raw_new=stamped, old=broken)
    invoke(dispatcher, echo)
    assert table.get("r1") == stamped

    # a person fixes the address: sent
    fixed = table.update("r1", to="alice@example.com")
    invoke(
        dispatcher,
        stream_record("MODIFY", raw_new=fixed, old=None)
        | {"dynamodb": {**stream_record("MODIFY", raw_new=fixed)["dynamodb"], "OldImage": stamped}},
    )
    assert blastengine.route.call_count == 1
    assert table.get("r1") is None


def test_the_far_send_after_of_the_report_fails_invalid_instead_of_retrying(
    dispatcher, table, stream_record, blastengine, invoke
) -> None:
    # GIVEN the row that overflowed when converted to UTC and was retried until the mapping
    # gave up, leaving it with no status
    raw = table.put(row("ovf-1", send_after="9999-12-31T23:59:59-14:00"))

    response = invoke(dispatcher, stream_record("INSERT", raw_new=raw))

    # THEN it is no batch item failure: it is failed, with the reason
    assert failed_ids(response) == []
    current = table.get("ovf-1")
    assert (attr(current, "status"), attr(current, "error_kind")) == ("failed", "invalid")
    assert "send_after:" in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_an_exception_on_a_rows_content_ends_in_a_stamp_not_a_retry(
    dispatcher, table, stream_record, blastengine, invoke, monkeypatch
) -> None:
    # GIVEN a parser bug that some content triggers
    import dispatcher.flow.dispatch as dispatch_module

    def broken_parser(*_: Any, **__: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(dispatch_module, "parse_row", broken_parser)
    raw = table.put(row("bug-1"))

    response = invoke(dispatcher, stream_record("INSERT", raw_new=raw))

    # THEN the row says what happened, and Lambda is not asked to retry it
    assert failed_ids(response) == []
    current = table.get("bug-1")
    assert attr(current, "status") == "failed"
    assert "OverflowError: date value out of range" in attr(current, "last_error")
    assert blastengine.route.call_count == 0


def test_a_row_sending_as_another_domain_fails_invalid_naming_from(
    dispatcher, table, stream_record, invoke, blastengine
) -> None:
    # the deployment's default sender is noreply@example.com: ALLOWED_FROM defaults to its domain
    raw = table.put(row("spoof-1", **{"from": "ceo@bank.example"}))
    invoke(dispatcher, stream_record("INSERT", raw_new=raw))
    current = table.get("spoof-1")
    assert attr(current, "error_kind") == "invalid"
    assert attr(current, "last_error").startswith("from: 'ceo@bank.example' is not among")
    assert blastengine.payloads == []
