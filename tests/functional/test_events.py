"""The sample events in events/ are accepted by the handler and do what their names say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EVENTS, load_event
from tests.functional.conftest import attr, failed_ids


def _seed(table, event) -> None:
    """Put each record's NewImage, as the writes that produced the stream did."""
    for record in event["Records"]:
        image = record["dynamodb"].get("NewImage")
        if image:
            table.put_raw(image)


@pytest.mark.parametrize(
    ("name", "sent_to"),
    [
        ("insert.json", ["hanako@example.com"]),
        ("edit-failed.json", ["taro@example.com"]),
        ("echo.json", []),
        ("refire-status.json", ["saburo@example.com"]),
        ("remove.json", []),
        ("invalid-row.json", []),
        ("mixed-batch.json", ["goro@example.com", "nana@example.com"]),
        ("list-unsubscribe.json", ["shiro@example.com"]),
    ],
)
def test_each_sample_event(name, sent_to, dispatcher, table, blastengine, invoke) -> None:
    # GIVEN the rows behind the event exist, as they would when the stream fired
    event = load_event(name)
    _seed(table, event)

    # WHEN the event is handled
    response = invoke(dispatcher, *event["Records"])

    # THEN no record is left for retry and exactly the expected mail went out
    assert failed_ids(response) == []
    assert sorted(p["to"] for p in blastengine.payloads) == sorted(sent_to)


def test_the_mixed_batch_leaves_the_bad_and_the_scheduled_rows_visible(
    dispatcher, table, blastengine, invoke
) -> None:
    event = load_event("mixed-batch.json")
    _seed(table, event)

    invoke(dispatcher, *event["Records"])

    assert attr(table.get("order-0008"), "error_kind") == "invalid"
    assert attr(table.get("digest-0010"), "status") == "scheduled"
    assert [p["subject"] for p in blastengine.payloads if p["to"] == "nana@example.com"] == [
        "Order confirmed"
    ]  # the edited content, not the draft


def test_the_newsletter_goes_with_reply_to_list_unsubscribe_and_a_text_part(
    dispatcher, table, blastengine, invoke
) -> None:
    event = load_event("list-unsubscribe.json")
    _seed(table, event)

    invoke(dispatcher, *event["Records"])

    [payload] = blastengine.payloads
    assert payload["reply_to"] == {"email": "news-replies@example.com", "name": "Example News"}
    assert payload["list_unsubscribe"] == {
        "url": "https://example.com/unsubscribe?u=shiro-0012",
        "mailto": "mailto:unsubscribe@example.com?subject=unsubscribe-shiro-0012",
    }
    assert payload["text_part"].startswith("December news\n\nHello __name__, here is what")
    assert "Read it online (https://example.com/news/12)" in payload["text_part"]


def test_every_event_file_is_covered() -> None:
    covered = {
        "insert.json",
        "edit-failed.json",
        "echo.json",
        "refire-status.json",
        "remove.json",
        "invalid-row.json",
        "mixed-batch.json",
        "list-unsubscribe.json",
        "attachment.json",  # tests/functional/test_attachments.py
    }
    assert {p.name for p in EVENTS.glob("*.json")} == covered


def test_the_event_sam_generates_is_accepted(dispatcher, table, blastengine, invoke) -> None:
    # `sam local generate-event dynamodb update` (checked in; `make template-check` diffs it
    # against a fresh one). Its rows have a numeric `Id`, not our `id`: nothing to send or
    # stamp, and nothing to retry.
    event = json.loads(
        (Path(__file__).resolve().parents[1] / "data" / "sam-dynamodb-update.json").read_text()
    )

    response = invoke(dispatcher, *event["Records"])

    assert failed_ids(response) == []
    assert blastengine.route.call_count == 0
    assert {r.outcome.value for r in dispatcher.last_results} == {"skipped"}
