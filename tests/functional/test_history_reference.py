"""docs/reference/history-item.md names every attribute the code writes on a history item
and on the mail as sent: a mail sent with everything, then delivered, opened and bounced."""

from __future__ import annotations

import re
from pathlib import Path

from dispatcher.bounces.event import BounceEvent, BounceType
from dispatcher.model.delivery_status import DeliveryStatus, StatusReport
from tests.conftest import TABLE_NAMES, row
from tests.functional.conftest import bounce_ledger, insert

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "history-item.md"


def test_the_reference_page_names_every_attribute_of_a_history_item(
    make_dispatcher, table, stream_record, invoke, dynamodb, blastengine
) -> None:
    # GIVEN a mail sent with cc, bcc and a resent_from, its body kept
    dispatcher = make_dispatcher(sent_mail_table_name=TABLE_NAMES["SentMailTable"])
    values = row("ref-1", cc=["c@example.com"], bcc=["b@example.com"], html="<p>x</p>",
                 resent_from="ref-0 @ 2026-12-01T00:00:00.000Z")  # fmt: skip
    invoke(dispatcher, insert(table, stream_record, values))
    [item] = table.history("ref-1")
    delivery = item["delivery_id"]["S"]
    # WHEN the provider reports it delivered and opened, and a cc recipient's bounce
    ledger = bounce_ledger(dynamodb)
    ledger.statuses.record(
        StatusReport(
            delivery, item["to"]["S"], DeliveryStatus.DELIVERED, "2026-12-05T10:00:00Z", "250 OK"
        )
    )
    ledger.statuses.record_open(delivery, "2026-12-05T10:05:00Z")
    ledger.apply(BounceEvent(BounceType.HARDERROR, "2026-12-05T10:01:00Z", "c@example.com",
                             delivery, code="550", message="user unknown"))  # fmt: skip
    [item] = table.history("ref-1")
    mail = dispatcher.store.sent_mail("ref-1", item["sent_at"]["S"])
    assert mail is not None

    # THEN the page names each attribute
    named = set(re.findall(r"`([a-z_]+)`", PAGE.read_text(encoding="utf-8")))
    missing = (set(item) | set(mail)) - named
    assert not missing, f"not on {PAGE.name}: {sorted(missing)}"
