"""One-click unsubscribe through the local stack: a newsletter carries the stack's link, a
POST to it suppresses the address for the newsletter, and only for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import RunningStack, running_stack, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("unsubscribe"), "--no-persist") as running:
        yield running


def _send(stack: RunningStack, row_id: str, **values: str) -> None:
    stack.put({"id": row_id, "to": "sora@example.com", "subject": row_id, "text": "x", **values})


def test_a_one_click_unsubscribe_stops_the_newsletter_and_nothing_else(
    stack: RunningStack,
) -> None:
    # GIVEN a newsletter sent: it carries the stack's signed one-click link
    _send(stack, "news-1", category="newsletter")
    wait_for(lambda: stack.mails("news-1"), what="the newsletter sent")
    [mail] = stack.mails("news-1")
    link = mail["payload"]["list_unsubscribe"]["url"]
    assert link.startswith(stack.ready["unsubscribe_url"] + "u/")
    shown = stack.cli("sandbox", "--headers").stdout
    assert f"List-Unsubscribe: <{link}>" in shown
    # WHEN the mailbox provider's button POSTs RFC 8058's body to it
    done = httpx.post(
        link,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert done.status_code == 200, done.text
    # THEN the next newsletter to the address is refused, naming the unsubscribe...
    _send(stack, "news-2", category="newsletter")
    wait_for(lambda: (stack.row("news-2") or {}).get("error_kind"), what="the refusal")
    row = stack.row("news-2")
    assert row["error_kind"] == {"S": "suppressed"}
    assert "unsubscribed from newsletter mail" in row["last_error"]["S"]
    # ... while a transactional mail to it is still sent, without a link
    _send(stack, "reset-1")
    wait_for(lambda: stack.mails("reset-1"), what="the transactional mail sent")
    assert "list_unsubscribe" not in stack.mails("reset-1")[0]["payload"]
    # AND a GET of the link only asks; a tampered link is not found
    page = httpx.get(link, timeout=30)
    assert page.status_code == 200
    assert "Unsubscribe" in page.text
    assert httpx.get(link[:-4] + "AAAA", timeout=30).status_code == 404
