"""The web console driven in a real browser (Debian's chromium, through Playwright), against
the real local stack: what a person does with a failed row, and what an attacker cannot do.

`make test` installs chromium; `make screenshots` also copies the pages shot here into
`docs/`, where the README shows them.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from dispatcher.ops.console.security import Guard
from tests.e2e.conftest import RunningStack, running_stack, wait_for

CHROMIUM = "/usr/bin/chromium"
# As the machine's own probe runs it: no sandbox as root, and none of the background
# connections a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # `make run`'s own stack: the demo's rows, among them order-0008 with its bad address
    with running_stack(tmp_path_factory.mktemp("console"), "--no-persist", "--demo") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt, as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def _console(stack: RunningStack) -> tuple[str, str]:
    url = stack.ready["console_url"]
    return url.split("?", 1)[0], url


def _shot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / name)


class _Tracker:
    """A loopback HTTP server that records every path asked of it."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.hits = hits
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> _Tracker:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _signed_in_on_a_failed_row(stack: RunningStack, page: Page, row: dict[str, Any]) -> str:
    """Insert ``row``, wait for it to fail, open the console's URL; the console's base."""
    stack.put(row)
    _failed(stack, row["id"])
    base, url = _console(stack)
    page.goto(url)
    return base


def _failed(stack: RunningStack, row_id: str) -> None:
    wait_for(
        lambda: (stack.row(row_id) or {}).get("status", {}).get("S") == "failed",
        what=f"{row_id} to fail",
    )


def test_a_newcomer_fixes_the_demos_failed_row_and_it_is_sent(
    console_stack: RunningStack, page: Page, tmp_path: Path
) -> None:
    stack = console_stack
    base, url = _console(stack)
    # GIVEN `make run`'s demo, whose order-0008 failed on its address (to = 'rokuro@'), once
    # it has settled (invoice-0011, to an address the sandbox fails, deferred)
    _failed(stack, "order-0008")
    wait_for(
        lambda: (stack.row("invoice-0011") or {}).get("status", {}).get("S") == "deferred",
        what="the demo to settle",
    )

    # WHEN a person opens the printed URL: the token becomes a cookie and leaves the URL
    page.goto(url)
    assert page.url == base
    expect(page.locator("#count-failed")).not_to_have_text("0")
    # the flow chart, drawn on the server: the demo's sent mail, its deferred and failed rows
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(2)
    hour = charts.first
    assert hour.locator("rect.delivered, rect.undelivered").count() >= 1
    assert hour.locator("rect.failed").count() >= 1
    assert hour.locator("rect.deferred").count() >= 1
    assert hour.bounding_box()["width"] > 300  # type: ignore[index]
    _shot(page, tmp_path, "console-overview.png")

    # and goes to the failed rows, then to the row
    page.get_by_role("link", name="Failed", exact=True).click()
    page.get_by_role("link", name="order-0008").click()
    problems = page.locator("section.problems")
    expect(problems).to_contain_text("to")
    expect(problems).to_contain_text("'rokuro@' is not a valid address")
    expect(page.locator(".preview")).to_contain_text("Order confirmed")
    _shot(page, tmp_path, "console-failed-row.png")

    # and fixes the address
    page.get_by_role("link", name="Fix and re-send…").click()
    page.locator("input[name=to]").fill("rokuro@example.com")
    page.get_by_role("button", name="Save and re-send").click()

    # THEN the row is sent: the page, the sandbox, the send table and the history agree
    expect(page.locator(".flash")).to_contain_text("Saved")

    def sent() -> bool:
        # the page reads the row, then its history: a send that commits between the two
        # shows both for one load, so ask again until a load shows it moved
        page.reload()
        return page.locator("tr.sent-item").count() == 1 and page.locator("p.ok").count() == 1

    wait_for(sent, what="the console to show order-0008 sent")
    expect(page.locator("p.ok")).to_contain_text("Not in the send table")
    assert stack.row("order-0008") is None
    assert len(stack.history("order-0008")) == 1
    [mail] = [m for m in stack.mails() if m["payload"]["to"] == "rokuro@example.com"]
    assert mail["payload"]["subject"] == "Order confirmed"


def test_an_html_mail_is_previewed_in_its_frame(console_stack: RunningStack, page: Page) -> None:
    base = _signed_in_on_a_failed_row(console_stack, page, {
        "id": "fix-0001", "to": "hanako@", "subject": "Receipt",
        "html": "<p>Thank you, <b id=name>Hanako</b>.</p>",
    })  # fmt: skip
    page.goto(f"{base}rows/fix-0001")

    expect(page.frame_locator("iframe.html").locator("#name")).to_have_text("Hanako")
    expect(page.locator("pre.text")).to_contain_text("Thank you, Hanako.")  # derived from HTML


def test_an_invalid_edit_is_refused_with_the_dispatchers_own_words(
    console_stack: RunningStack, page: Page
) -> None:
    stack = console_stack
    row = {"id": "fix-0002", "to": "nobody@", "subject": "Hi", "text": "Hello."}
    base = _signed_in_on_a_failed_row(stack, page, row)
    page.goto(f"{base}edit/fix-0002")

    page.locator("input[name=to]").fill("still-not-an-address")
    page.locator("textarea[name=text]").fill("")
    page.get_by_role("button", name="Save and re-send").click()

    expect(page.locator("label.invalid")).to_have_count(2)  # to, and text (no body left)
    expect(page.locator("section.problems")).to_contain_text("is not a valid address")
    expect(page.locator("section.problems")).to_contain_text("needs a text or an html body")
    # nothing was saved
    assert stack.row("fix-0002")["to"] == {"S": "nobody@"}


def test_a_row_changed_underneath_the_form_is_not_overwritten(
    console_stack: RunningStack, page: Page
) -> None:
    stack = console_stack
    row = {"id": "fix-0003", "to": "hanako@", "subject": "Invoice", "text": "Attached."}
    base = _signed_in_on_a_failed_row(stack, page, row)
    page.goto(f"{base}edit/fix-0003")
    page.locator("input[name=to]").fill("hanako@example.com")

    # WHEN someone else changes the row before the form is saved
    stack.update("fix-0003", "SET #s = :s", {"#s": "subject"}, {":s": {"S": "Invoice (2)"}})
    page.get_by_role("button", name="Save and re-send").click()

    # THEN the person sees the conflict, their edit kept in the form, and nothing is overwritten
    expect(page.locator("section.conflict")).to_contain_text("changed since you opened it")
    expect(page.locator("input[name=to]")).to_have_value("hanako@example.com")
    row = stack.row("fix-0003")
    assert row["subject"] == {"S": "Invoice (2)"}
    assert row["to"] == {"S": "hanako@"}


def test_a_hostile_row_shows_as_text_and_its_html_runs_nothing(
    console_stack: RunningStack, page: Page
) -> None:
    stack = console_stack
    base, url = _console(stack)
    hostile = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    # "remote": a server of another origin that counts what reaches it
    tracker = _Tracker().start()
    remote = f"{tracker.url}pixel.gif"
    stack.put({"id": "evil-0001", "to": "nobody@", "subject": hostile, "text": "x",
               "html": "<p id=p>hi</p><script>parent.document.title='pwned';alert(2)</script>"
                       f"<img src='{remote}'>"})  # fmt: skip
    _failed(stack, "evil-0001")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(url)
        page.goto(f"{base}rows/evil-0001")
        page.wait_for_load_state("networkidle")  # the frame's loads, had any been let out
    finally:
        tracker.stop()

    expect(page.locator(".preview p").first).to_contain_text(hostile)  # the subject, as text
    frame = page.frame_locator("iframe.html")
    expect(frame.locator("#p")).to_have_text("hi")  # the HTML is shown...
    assert page.title() == "evil-0001 · mail dispatcher"  # ...and its script did not run
    assert dialogs == []
    assert tracker.hits == [], "the preview loaded a remote image"


def test_without_the_token_the_console_refuses_and_a_forged_post_is_rejected(
    console_stack: RunningStack, browser: Browser
) -> None:
    stack = console_stack
    base, url = _console(stack)
    stranger = browser.new_context()
    try:
        response = stranger.new_page().goto(base)
        assert response is not None
        assert response.status == 401
        wrong = stranger.new_page().goto(f"{base}?token=guess")
        assert wrong is not None
        assert wrong.status == 401
    finally:
        stranger.close()

    # a POST with the cookie but without the CSRF token (what a forged form sends) is refused
    stack.put({"id": "csrf-0001", "to": "x@", "subject": "s", "text": "t"})
    _failed(stack, "csrf-0001")
    token = url.split("token=", 1)[1]
    cookie = f"dispatcher_console_{base.rstrip('/').rsplit(':', 1)[1]}"
    value = Guard(token, cookie).cookie_value  # what the browser holds: not the token
    with httpx.Client(base_url=base, cookies={cookie: value}) as client:
        refused = client.post("/cancel/csrf-0001", data={"version": "x"})
        assert refused.status_code == 403
    # and a Host that is not the console's (DNS rebinding) is refused too
    assert httpx.get(base, headers={"Host": "attacker.example"}).status_code == 421
    assert stack.row("csrf-0001") is not None


def test_a_person_finds_every_mail_to_an_address_from_the_history(
    console_stack: RunningStack, page: Page, tmp_path: Path
) -> None:
    # GIVEN two mails sent to one address, and a row to it that failed
    for n in (1, 2):
        console_stack.put(
            {"id": f"rcpt-000{n}", "to": "Tomo@example.com", "subject": f"Order {n}", "text": "x"}
        )
    wait_for(lambda: console_stack.history("rcpt-0002"), what="the second mail sent")
    wait_for(lambda: console_stack.history("rcpt-0001"), what="the first mail sent")
    base = _signed_in_on_a_failed_row(console_stack, page, {
        "id": "rcpt-0003", "to": "tomo@example.com", "subject": "Order 3",
        "text": "x", "encode": "Shift_JIS",
    })  # fmt: skip

    # WHEN they search the history for the address and open it
    page.goto(f"{base}history?to=tomo%40example.com")
    page.get_by_role("link", name="tomo@example.com").first.click()

    # THEN one screen shows both mails with their delivery status, and the row still waiting
    expect(page.locator("h1")).to_have_text("tomo@example.com")
    expect(page.locator("tr.sent-item")).to_have_count(2)
    # accepted, or already delivered: every sweep asks the sandbox's mail log
    expect(page.locator("span.delivery").first).to_have_text(re.compile("accepted|delivered"))
    expect(page.get_by_role("link", name="rcpt-0003")).to_be_visible()
    expect(page.locator("p.ok")).to_contain_text("Not suppressed")
    _shot(page, tmp_path, "console-recipient.png")


def test_a_person_opens_a_mail_as_it_was_sent_and_sends_it_again(
    console_stack: RunningStack, page: Page, tmp_path: Path
) -> None:
    # GIVEN a mail with an HTML part, sent
    console_stack.put({
        "id": "again-0001", "to": "saki@example.com", "subject": "Your receipt",
        "text": "Thank you", "html": "<h1 style='color:#0a5'>Thank you</h1><p>Receipt 12</p>",
    })  # fmt: skip
    wait_for(lambda: console_stack.history("again-0001"), what="the mail sent")
    base, url = _console(console_stack)
    page.goto(url)

    # WHEN they open the row's page and its send
    page.goto(f"{base}rows/again-0001")
    page.locator("tr.sent-item a").first.click()

    # THEN the mail as sent is shown, its HTML in the sandboxed frame
    expect(page.locator("h1")).to_contain_text("again-0001")
    expect(page.locator(".preview")).to_contain_text("Your receipt")
    frame = page.frame_locator("iframe.html")
    expect(frame.locator("h1")).to_have_text("Thank you")
    _shot(page, tmp_path, "console-sent.png")

    # WHEN they send it again, and confirm
    page.get_by_role("link", name="Send again…").click()
    page.get_by_role("button", name="Yes, send it again").click()

    # THEN a new row, naming the original, is on its page and is sent once
    expect(page.locator("p.flash")).to_contain_text("A copy of the mail as sent")
    new_id = page.locator("h1").inner_text()
    assert new_id.startswith("again-0001~resent-")
    wait_for(lambda: console_stack.history(new_id), what="the copy sent")
    [copy] = console_stack.history(new_id)
    assert copy["resent_from"]["S"].startswith("again-0001 @ ")


def test_a_person_fixes_a_template_that_rows_failed_on_and_refires_them(
    console_stack: RunningStack, page: Page, tmp_path: Path
) -> None:
    # GIVEN the demo's shipped-0014, failed: its vars lack the template's tracking_url
    _failed(console_stack, "shipped-0014")
    base, url = _console(console_stack)
    page.goto(url)

    # WHEN a person opens Templates, then the template the row failed on
    page.get_by_role("link", name="Templates", exact=True).click()
    expect(page.locator("table.templates")).to_contain_text("order-shipped")
    page.get_by_role("link", name="order-shipped").click()
    expect(page.locator("section.problems").first).to_contain_text("shipped-0014")
    # the current version previewed with its example, the HTML in the sandboxed frame
    expect(page.locator(".preview")).to_contain_text("Order A-7 has shipped")
    expect(page.frame_locator("iframe.html").locator("b")).to_have_text("A-7")

    # WHEN they make the tracking link optional, preview the draft, then save it
    text = page.locator("textarea[name=text]")
    text.fill("Hello {{ name }},\n\nyour order {{ order.id }} is on its way"
              "{% if tracking_url is defined %}: {{ tracking_url }}{% endif %}.\n")  # fmt: skip
    page.locator("textarea[name=html]").fill(
        "<p>Hello {{ name }},</p><p>your order <b>{{ order.id }}</b> is on its way.</p>"
    )
    page.locator("input[name=optional]").fill("tracking_url")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("pre.diff")).to_contain_text("{% if tracking_url is defined %}")
    expect(page.frame_locator("iframe.html").locator("b")).to_have_text("A-7")
    page.locator("iframe.html").scroll_into_view_if_needed()  # painted where it is seen
    _shot(page, tmp_path, "console-template.png")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("p.flash")).to_contain_text("Saved as the current version")

    # AND re-fire the rows that failed on a template
    page.goto(f"{base}refire-failed?kind=template")
    page.get_by_role("button", name=re.compile("^Yes")).click()

    # THEN the row is sent, rendered with the new version
    wait_for(lambda: console_stack.history("shipped-0014"), what="the re-fired row sent")
    [item] = console_stack.history("shipped-0014")
    assert item["template"]["S"].startswith("order-shipped@")
    [mail] = console_stack.mails("Order B-14")
    assert "is on its way." in mail["payload"]["text_part"]


def test_a_person_suppresses_an_address_for_a_category_and_lifts_it(
    console_stack: RunningStack, page: Page, tmp_path: Path
) -> None:
    _, url = _console(console_stack)
    page.goto(url)
    page.get_by_role("link", name="Suppressions", exact=True).click()
    # WHEN a person suppresses an address for the newsletter, saying why
    form = page.locator("form[action='/suppressions'][method='post']")
    form.locator("input[name=address]").fill("Yuki@Example.com")
    form.locator("input[name=scope]").fill("newsletter")
    form.locator("input[name=reason]").fill("asked by phone")
    form.get_by_role("button", name="Suppress").click()
    # THEN it is listed with its scope, why and who
    row = page.locator("table.suppressions tbody tr", has_text="yuki@example.com")
    expect(row).to_contain_text("newsletter")
    expect(row).to_contain_text("asked by phone")
    expect(row).to_contain_text("console")
    _shot(page, tmp_path, "console-suppressions.png")
    # WHEN they lift it, after the question
    row.get_by_role("link", name="Lift…").click()
    expect(page.locator("h1")).to_contain_text("yuki@example.com for newsletter mail")
    page.get_by_role("button", name="Yes, lift it").click()
    expect(page.locator("p.flash")).to_contain_text("Lifted")
    expect(page.locator("table.suppressions tbody tr", has_text="yuki@example.com")).to_have_count(
        0
    )


def test_a_paused_category_shows_a_banner_and_is_resumed_from_it(
    console_stack: RunningStack, page: Page, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from dispatcher.reputation.guard import ReputationGuard, Thresholds

    # GIVEN the guard paused the marketing mail (its bounces, as the stack would count them)
    guard = ReputationGuard(
        table="mail-dispatcher-reputation", boto3_client=console_stack.client,
        thresholds=Thresholds(0.05, 0.003, 10),
    )  # fmt: skip
    guard.add("marketing", datetime.now(UTC), sent=20, bounced=4)
    assert guard.assess("marketing", datetime.now(UTC)).pause is not None
    _, url = _console(console_stack)
    page.goto(url)
    # THEN the overview says so
    banner = page.locator("section.paused")
    expect(banner).to_contain_text("marketing mail is paused")
    expect(banner).to_contain_text("PAUSE_BOUNCE_RATE")
    _shot(page, tmp_path, "console-paused.png")
    # WHEN a person resumes it, after the question
    banner.get_by_role("link", name="Resume…").click()
    page.get_by_role("button", name="Yes, resume marketing mail").click()
    # THEN the banner is gone and the category sends again
    expect(page.locator("p.flash")).to_contain_text("Resumed")
    expect(page.locator("section.paused")).to_have_count(0)
    assert guard.paused(("marketing",)) == {}
