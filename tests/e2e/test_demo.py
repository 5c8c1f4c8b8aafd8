"""`dispatcher demo`: the sample rows through a local stack of its own."""

from __future__ import annotations


def test_demo_shows_mail_sent_and_a_bad_row_kept_with_its_reason() -> None:
    from rich.console import Console

    from dispatcher.local.demo import run_demo

    console = Console(record=True, width=120)
    seen = run_demo(console)

    sent_to = {m["to"] for m in seen["mails"]}
    assert {"hanako@example.com", "goro@example.com", "rokuro@example.com"} <= sent_to
    kept = {item["id"]["S"]: item for item in seen["kept"]}
    assert kept["broken-0006"]["error_kind"]["S"] == "invalid"
    assert "to:" in kept["broken-0006"]["last_error"]["S"]
    assert kept["digest-0010"]["status"]["S"] == "scheduled"
    assert "order-0008" not in kept  # fixed by the demo, then sent
    # the template rows: one rendered and sent, one fixed (its vars) and then sent
    subjects = {m["subject"] for m in seen["mails"]}
    assert {"Order B-13 has shipped", "Order B-14 has shipped"} <= subjects
    assert "shipped-0014" not in kept
    # the newsletter carries the stack's one-click link; transactional mail none
    [news] = [m for m in seen["mails"] if m["subject"] == "December news"]
    assert "/u/" in news["list_unsubscribe"]["url"]
    assert all(
        "list_unsubscribe" not in m for m in seen["mails"] if m["subject"] != "December news"
    )
    assert "carries List-Unsubscribe" in console.export_text(clear=False)
    assert "What stayed in the send table" in console.export_text()
