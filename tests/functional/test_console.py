"""The console's pages and their JSON twins, in process over moto: what each answers, and
what it refuses. The browser tests (tests/e2e/test_console_browser.py) drive the same pages
in chromium against the real stack."""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # Starlette's TestClient prefers httpx2 now; the httpx it runs on is the project's own.
    warnings.simplefilter("ignore", UserWarning)  # StarletteDeprecationWarning
    from starlette.testclient import TestClient

from dispatcher.ops.console import create_app
from tests.conftest import row
from tests.functional.conftest import put_history

HOST = "127.0.0.1:8000"
TOKEN = "t" * 43


@pytest.fixture
def browser(admin) -> TestClient:
    """A client that opened the printed URL: it holds the cookie."""
    app = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}))
    client = TestClient(app, base_url=f"http://{HOST}")
    opened = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/"
    return client


@pytest.fixture
def script(admin) -> TestClient:
    app = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}))
    return TestClient(app, base_url=f"http://{HOST}", headers={"Authorization": f"Bearer {TOKEN}"})


def _failed(table, row_id: str, **values) -> None:
    table.put(row(row_id, status="failed", error_kind="invalid",
                  failed_at="2026-12-01T10:00:00.000Z", last_error="to: 'x@' is not valid",
                  **values))  # fmt: skip


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def _version(html: str) -> str:
    match = re.search(r'name="version" value="([0-9a-f]*)"', html)
    assert match
    return match.group(1)


def test_every_page_has_a_json_twin(script, table) -> None:
    _failed(table, "a", to="x@")
    overview = script.get("/api/overview").json()
    assert overview["counts"]["failed_by_kind"] == {"invalid": 1}
    listing = script.get("/api/rows", params={"status": "failed"}).json()
    assert [r["id"] for r in listing["rows"]] == ["a"]
    one = script.get("/api/rows/a").json()
    assert one["row"]["problems"] == [{"attribute": "to", "problem": "'x@' is not valid"}]
    assert script.get("/api/history").json()["items"] == []


def test_pages_carry_a_strict_policy_and_values_are_escaped(browser, table) -> None:
    _failed(table, "h", subject="<script>alert(1)</script>")
    page = browser.get("/rows/h")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # none at all: default-src 'none' forbids every script
    assert page.headers["x-frame-options"] == "DENY"


def test_the_html_preview_is_sandboxed_and_loads_nothing_remote(browser, table) -> None:
    _failed(table, "h", html="<p>hi</p><img src='https://tracker.example/p.gif'>")
    preview = browser.get("/preview/h")
    policy = preview.headers["content-security-policy"]
    assert policy.endswith("sandbox")
    assert "img-src data:;" in policy
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"


def test_no_token_no_console(admin) -> None:
    app = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}))
    client = TestClient(app, base_url=f"http://{HOST}")
    assert client.get("/").status_code == 401
    assert client.get("/api/overview").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    rebinding = TestClient(app, base_url="http://attacker.example")
    assert rebinding.get(f"/?token={TOKEN}").status_code == 421


def test_a_post_without_the_csrf_token_is_refused(browser, table) -> None:
    _failed(table, "c")
    form = browser.get("/cancel/c").text
    refused = browser.post("/cancel/c", data={"version": _version(form)})
    assert refused.status_code == 403
    assert table.get("c") is not None
    done = browser.post(
        "/cancel/c",
        data={"version": _version(form), "csrf": _csrf(form)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert table.get("c") is None


def test_an_edit_is_checked_by_the_parser_and_saved_on_the_row_as_loaded(browser, table) -> None:
    _failed(table, "e", to="x@")
    form = browser.get("/edit/e").text
    fields = {"csrf": _csrf(form), "version": _version(form), "subject": "Hello",
              "text": "Hi there"}  # fmt: skip

    bad = browser.post("/edit/e", data={**fields, "to": "still bad"})
    assert bad.status_code == 422
    assert "is not a valid address" in bad.text
    assert table.get("e")["to"]["S"] == "x@"

    saved = browser.post(
        "/edit/e", data={**fields, "to": "bob@example.com"}, follow_redirects=False
    )
    assert saved.status_code == 303
    assert table.get("e")["to"]["S"] == "bob@example.com"

    stale = browser.post("/edit/e", data={**fields, "to": "carol@example.com"})
    assert stale.status_code == 409  # the form's version is the row before the save
    assert "changed since you opened it" in stale.text
    assert table.get("e")["to"]["S"] == "bob@example.com"


def test_bulk_refire_asks_first_then_refires_each_failed_row_of_the_kind(browser, table) -> None:
    _failed(table, "b1")
    _failed(table, "b2")
    table.put(row("other", status="failed", error_kind="config", failed_at="2026-12-01T10:00Z"))
    confirm = browser.get("/refire-failed", params={"kind": "invalid"})
    assert "Re-fire all 2 failed rows of kind invalid" in confirm.text

    done = browser.post(
        "/refire-failed", data={"kind": "invalid", "csrf": _csrf(confirm.text)},
        follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303
    assert "refired-2-of-2" in done.headers["location"]
    assert table.get("b1")["revision"]["N"] == "1"
    assert "revision" not in table.get("other")


def test_bad_filters_are_clear_errors(script) -> None:
    answer = script.get("/api/rows", params={"status": "lost"})
    assert answer.status_code == 400
    assert "status must be one of" in answer.json()["error"]
    assert script.get("/api/rows", params={"page": "garbage"}).status_code == 400
    assert script.get("/api/history", params={"since": "yesterday"}).status_code == 400
    assert script.get("/api/rows/nope").status_code == 404


def test_a_line_break_in_a_one_line_field_is_shown_and_refused_not_dropped(browser, table) -> None:
    _failed(table, "crlf", subject="Hello\r\nBcc: victim@example.com")
    form = browser.get("/edit/crlf").text
    # an <input> would lose the line break unseen; a textarea keeps it in front of the person
    assert re.search(r'<textarea name="subject"[^>]*>Hello\r?\nBcc: victim@example.com<', form)
    fields = {"csrf": _csrf(form), "version": _version(form), "to": "bob@example.com",
              "subject": "Hello\r\nBcc: victim@example.com", "text": "Hi"}  # fmt: skip
    refused = browser.post("/edit/crlf", data=fields)
    assert refused.status_code == 422
    assert "line break" in refused.text


def test_ids_with_slashes_and_query_characters_reach_their_own_row(browser, table) -> None:
    from urllib.parse import quote

    odd = "order/2026/edit?x=1#y"
    _failed(table, odd, to="x@")
    path = quote(odd, safe="/")  # as the templates' urlencode writes it
    page = browser.get(f"/rows/{path}")
    assert page.status_code == 200
    assert f'href="/edit/{path}"' in page.text
    form = browser.get(f"/edit/{path}").text
    saved = browser.post(
        f"/edit/{path}",
        data={"csrf": _csrf(form), "version": _version(form), "to": "bob@example.com",
              "subject": "Hello", "text": "Hi there"},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    assert table.get(odd)["to"]["S"] == "bob@example.com"
    assert browser.get(saved.headers["location"]).status_code == 200


def test_a_script_edits_through_the_json_twin_and_gets_the_same_statuses(script, table) -> None:
    _failed(table, "j", to="x@")
    version = script.get("/api/rows/j").json()["row"]["version"]
    fields = {"version": version, "subject": "Hello", "text": "Hi there"}

    bad = script.post("/api/edit/j", json={**fields, "to": "nope"})
    assert bad.status_code == 422
    assert "is not a valid address" in bad.json()["problems"]["to"][0]

    assert script.post("/api/edit/j", json={**fields, "to": "bob@example.com"}).json() == {
        "id": "j",
        "result": "saved",
    }
    stale = script.post("/api/edit/j", json={**fields, "to": "carol@example.com"})
    assert stale.status_code == 409
    assert stale.json()["conflict"] is True
    assert table.get("j")["to"]["S"] == "bob@example.com"


def test_encode_is_a_choice_that_still_shows_a_bad_value(browser, table) -> None:
    _failed(table, "enc", encode="Shift_JIS")
    form = browser.get("/edit/enc").text
    assert '<option value="ISO-2022-JP">' in form
    assert '<option value="Shift_JIS" selected>' in form  # what the row holds, to be fixed


def test_the_edit_form_has_a_field_for_every_request_attribute() -> None:
    from dispatcher.model.row import REQUEST_ATTRIBUTES
    from dispatcher.ops.console.forms import JSON_FIELDS, LIST_FIELDS, TEXT_FIELDS

    fields = [*TEXT_FIELDS, *LIST_FIELDS, *JSON_FIELDS]
    assert len(fields) == len(set(fields))
    # revision is kept as it was: re-fire bumps it
    assert {*fields, "revision"} == REQUEST_ATTRIBUTES


def test_a_row_waiting_for_its_lookup_says_so_and_why(browser, script, table) -> None:
    # GIVEN a row whose send went unanswered, and the history of another, confirmed by look-up
    from datetime import UTC, datetime

    from dispatcher.model.unsettled import Unsettled

    marker = Unsettled(
        provider="blastengine",
        to="alice@example.com",
        opened_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        closed_at=datetime(2026, 12, 1, 10, 0, 10, tzinfo=UTC),
        digests=("d" * 64,),
        content_hash="h" * 64,
        reason="no answer from blastengine within 10.0s (ReadTimeout)",
    )
    table.put(row("waiting-1", status="deferred", error_kind="ambiguous",
                  retry_at="2026-12-01T10:10:10.000Z", failed_at="2026-12-01T10:00:10.000Z",
                  last_error="no answer; blastengine may have taken the mail",
                  unsettled=marker.to_plain()))  # fmt: skip

    # WHEN its page is opened
    page = browser.get("/rows/waiting-1").text
    twin = script.get("/api/rows/waiting-1").json()

    # THEN it says what it waits for, from when to when, and that nothing is sent blindly
    assert "Waiting for its look-up" in page
    assert "sent between 2026-12-01T10:00:00.000Z and 2026-12-01T10:00:10.000Z" in page
    assert "next look-up at 2026-12-01T10:10:10.000Z" in page
    assert twin["row"]["unsettled"].startswith("blastengine may have taken the mail")


def test_a_banner_says_when_staging_safety_is_on(admin) -> None:
    from dispatcher.ops.targets import _staging

    staging = _staging("@staging.example.com", "inbox@staging.example.com")
    app = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}), staging=staging)
    client = TestClient(
        app, base_url=f"http://{HOST}", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    page = client.get("/rows").text

    assert "Staging safety is on" in page
    assert "every mail goes to inbox@staging.example.com instead (REDIRECT_ALL_TO)" in page
    assert "only @staging.example.com receive mail (RECIPIENT_ALLOWLIST)" in page
    # and none in production
    plain = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}))
    quiet = TestClient(
        plain, base_url=f"http://{HOST}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert "Staging safety" not in quiet.get("/rows").text
    assert _staging("", "") == ""
    assert _staging("not-an-entry", None).startswith("misconfigured")
    # the redirect outside the allowlist, which stops the function, is not a banner of rules
    assert "outside RECIPIENT_ALLOWLIST" in _staging("@staging.example.com", "me@example.org")


def test_the_overview_charts_the_flow_from_what_it_reads(script, browser, table, dynamodb) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher.support.clock import iso_utc
    from tests.conftest import TABLE_NAMES

    now = datetime.now(UTC)
    for n, ago in enumerate((timedelta(minutes=2), timedelta(minutes=2), timedelta(hours=3))):
        dynamodb.put_item(
            TableName=TABLE_NAMES["HistoryTable"],
            Item={"id": {"S": f"h{n}"}, "sent_at": {"S": iso_utc(now - ago)}},
        )
    table.put(
        row(
            "f1",
            status="failed",
            error_kind="invalid",
            last_error="to: bad",
            failed_at=iso_utc(now - timedelta(minutes=5)),
        )
    )

    flow = script.get("/api/overview").json()["flow"]

    assert flow["hour"]["step_seconds"] == 60
    assert sum(flow["hour"]["counts"]["sent"]) == 2  # the third is three hours old
    assert sum(flow["day"]["counts"]["sent"]) == 3
    assert sum(flow["hour"]["counts"]["failed"]) == 1
    assert "times" not in script.get("/api/overview").json()["sent"]["day"]
    page = browser.get("/").text
    assert page.count('<svg class="chart"') == 2
    assert "<script" not in page


def test_the_reference_page_names_every_route_and_what_each_twin_answers(admin, script, table):
    page = (Path(__file__).resolve().parents[2] / "docs/reference/console-api.md").read_text()
    app = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}))
    paths = {
        r.path.replace(":path}", "}")
        for r in app.routes
        if not r.path.startswith(("/api/", "/static"))
    }
    assert paths == set(re.findall(r"^\| `(/[^`]*)` \|", page, re.M))
    _failed(table, "a", to="x@")
    answers = {
        "/api/overview": script.get("/api/overview").json(),
        "/api/rows": script.get("/api/rows").json(),
        "/api/rows/a": script.get("/api/rows/a").json(),
        "/api/history": script.get("/api/history").json(),
    }
    answers["/api/rows/a row"] = answers["/api/rows/a"]["row"]
    answers["/api/overview counts"] = answers["/api/overview"]["counts"]
    for where, answer in answers.items():
        for key in answer:
            assert f"`{key}`" in page, f"{where} answers {key!r}, which the page does not name"


def test_the_token_swap_redirects_to_the_consoles_own_paths_only(admin) -> None:
    """GET //evil.example/x?token=... as a browser sends it (a raw path: HTTP clients in
    tests tidy such paths away) must not redirect off-site."""
    app = create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST}))

    async def location_for(path: str) -> str:
        scope = {
            "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": f"token={TOKEN}".encode(), "root_path": "", "scheme": "http",
            "headers": [(b"host", HOST.encode())], "http_version": "1.1",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        }  # fmt: skip
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        [start] = [m for m in sent if m["type"] == "http.response.start"]
        assert start["status"] == 303
        return dict(start["headers"])[b"location"].decode()

    for path in ("//evil.example/x", "/\\evil.example/x", "///evil.example/x"):
        location = asyncio.run(location_for(path))
        assert location.startswith("/"), location
        assert not location.startswith(("//", "/\\")), location  # "/%5C..." is a path here


def test_the_cookie_opens_pages_but_is_not_the_token_and_cannot_write(
    browser, table, admin
) -> None:
    # GIVEN the cookie a browser holds (which it also sends to other ports of this host)
    [cookie] = [c for c in browser.cookies.jar]
    assert cookie.value != TOKEN
    # THEN it reads pages
    assert browser.get("/").status_code == 200
    # but is no token: neither as a bearer nor in a URL
    stranger = TestClient(
        create_app(admin, token=TOKEN, allowed_hosts=frozenset({HOST})),
        base_url=f"http://{HOST}",
    )
    assert stranger.get("/", headers={"Authorization": f"Bearer {cookie.value}"}).status_code == 401
    assert stranger.get(f"/?token={cookie.value}", follow_redirects=False).status_code == 401
    # and a write needs the CSRF token, which only pages the console serves carry
    _failed(table, "f1")
    refused = browser.post("/cancel/f1", data={"version": "x"}, follow_redirects=False)
    assert refused.status_code == 403


def test_a_recipients_page_shows_its_mail_its_waiting_rows_and_its_suppression(
    script, browser, table, dispatcher, stream_record, invoke, blastengine, admin
) -> None:
    from dispatcher.recipients.suppression import Suppression
    from tests.functional.conftest import insert

    # GIVEN two mails sent to Kiyo, a row to her that failed, and her address suppressed
    for row_id in ("k-1", "k-2"):
        invoke(dispatcher, insert(table, stream_record, row(row_id, to="Kiyo@example.com")))
    _failed(table, "k-3", to="kiyo@example.com")
    _failed(table, "other", to="someone@example.com")
    admin.suppressions.add(
        Suppression("kiyo@example.com", "HARDERROR", "2026-12-05T10:00:00.000Z", code="550")
    )

    # WHEN her page is asked for (as JSON, and in the browser)
    page = script.get("/api/recipients/KIYO@example.com").json()

    # THEN it lists both mails with their status, the waiting row, and why she is suppressed
    assert page["address"] == "kiyo@example.com"
    assert sorted(m["id"] for m in page["mail"]) == ["k-1", "k-2"]
    assert {m["delivery_status"] for m in page["mail"]} == {"accepted"}
    assert [r["id"] for r in page["waiting"]] == ["k-3"]
    assert page["suppressed"]["reason"] == "HARDERROR"
    html = browser.get("/recipients/kiyo@example.com").text
    assert "Suppressed" in html
    assert "k-3" in html
    assert html.count('class="sent-item"') == 2
    # and the history page links each recipient to its page
    assert "/recipients/kiyo%40example.com" in browser.get("/history").text.lower()


def test_a_recipients_page_for_what_is_not_an_address_is_a_400(script) -> None:
    assert script.get("/api/recipients/nobody").status_code == 400


def test_the_overview_counts_delivered_beside_sent(script, table, dynamodb) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher.support.clock import iso_utc

    now = datetime.now(UTC)
    for n, status in enumerate(("delivered", "accepted", "complained", "bounced")):
        put_history(
            dynamodb, row_id=f"d-{n}", sent_at=iso_utc(now - timedelta(minutes=n + 1)),
            delivery_id=str(n), delivery_status=status,
        )  # fmt: skip
    overview = script.get("/api/overview").json()
    hour = overview["sent"]["hour"]
    assert (hour["sent"], hour["delivered"]) == (4, 2)
    # and the chart draws the delivered part of each minute's sent
    counts = overview["flow"]["hour"]["counts"]
    assert (sum(counts["sent"]), sum(counts["delivered"])) == (4, 2)


def test_a_sends_page_shows_the_mail_as_sent_and_send_again_inserts_a_copy_once(
    script, browser, table, make_dispatcher, stream_record, invoke, blastengine
) -> None:
    from tests.conftest import TABLE_NAMES
    from tests.functional.conftest import insert

    # GIVEN a mail sent with its body kept
    dispatcher = make_dispatcher(sent_mail_table_name=TABLE_NAMES["SentMailTable"])
    values = row("s-1", to="Ume@example.com", subject="Hi __n__", html="<p>__n__</p>",
                 text="Hello __n__", insert_code={"n": "<Ume>"})  # fmt: skip
    invoke(dispatcher, insert(table, stream_record, values))
    [item] = table.history("s-1")
    sent_at = item["sent_at"]["S"]

    # WHEN its page is opened (the latest send without ?at=)
    page = script.get("/api/sent/s-1").json()
    # THEN it shows the history item and the mail as the recipient got it
    assert page["sent_at"] == sent_at
    assert page["item"]["delivery_status"] == "accepted"
    assert (page["mail"]["subject"], page["mail"]["text"]) == ("Hi <Ume>", "Hello <Ume>")
    html = browser.get(f"/sent/s-1?at={sent_at}").text
    assert "Hi &lt;Ume&gt;" in html
    assert 'sandbox=""' in html
    assert "/sent-preview/s-1?at=" in html
    framed = browser.get(f"/sent-preview/s-1?at={sent_at}")
    assert framed.text == "<p>&lt;Ume&gt;</p>"
    assert "sandbox" in framed.headers["content-security-policy"]
    # and the row's page links to it
    assert "/sent/s-1?at=" in browser.get("/rows/s-1").text

    # WHEN "Send again" is asked, then confirmed with the CSRF token, to another address
    asked = browser.get(f"/resend/s-1?at={sent_at}")
    assert "Send s-1 again?" in asked.text
    confirmed = browser.post(
        "/resend/s-1", data={"csrf": _csrf(asked.text), "at": sent_at, "to": "Nao@example.com"},
        follow_redirects=False,
    )  # fmt: skip
    # THEN one new row copies the mail as sent, naming the original, to the new address alone
    assert confirmed.status_code == 303
    new_id = confirmed.headers["location"].split("/rows/")[1].split("?")[0]
    copy = table.get(new_id.replace("%7E", "~"))
    assert copy is not None
    assert copy["to"] == {"S": "nao@example.com"}
    assert copy["subject"] == {"S": "Hi <Ume>"}
    assert copy["resent_from"] == {"S": f"s-1 @ {sent_at}"}
    assert "insert_code" not in copy  # already filled in: sent as it was


def test_send_again_is_refused_clearly_when_there_is_nothing_to_copy(script, table, dynamodb):
    # GIVEN a send whose body is not kept, and an id never sent
    put_history(dynamodb, row_id="old-1", delivery_id="9")
    # THEN its page says so and send again is a clear refusal, not a new row
    assert script.get("/api/sent/old-1").json()["mail"] is None
    refused = script.post("/api/resend/old-1", json={})
    assert refused.status_code == 409
    assert "no longer kept" in refused.json()["error"]
    assert script.get("/api/sent/never").status_code == 404
    bad = script.post("/api/resend/old-1", json={"to": "nope"})
    assert bad.status_code == 400
    assert "'nope' is not an email address" in bad.json()["error"]


def test_the_overview_counts_mail_with_no_final_status_72_hours_on(script, dynamodb) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher.support.clock import iso_utc

    # GIVEN mail sent 80 hours ago (one delivered, one still accepted, one delayed), one
    # sent 100 hours ago still accepted (past the window), and one sent now
    now = datetime.now(UTC)
    for row_id, hours, status in (
        ("a", 80, "delivered"), ("b", 80, "accepted"), ("c", 79, "delayed"),
        ("d", 100, "accepted"), ("e", 0.1, "accepted"),
    ):  # fmt: skip
        put_history(dynamodb, row_id=row_id, sent_at=iso_utc(now - timedelta(hours=hours)),
                    delivery_id=row_id, delivery_status=status)  # fmt: skip
    sent = script.get("/api/overview").json()["sent"]
    # THEN the window 72-96 h ago holds three, two of them with no final status
    late = sent["72h_ago"]
    assert (late["sent"], late["delivered"], late["not_final"]) == (3, 1, 2)
    assert late["until"] is not None
    # and the day counts only what was sent in it
    assert (sent["day"]["sent"], sent["day"]["not_final"]) == (1, 1)


def test_a_template_is_written_previewed_and_saved_in_the_console(browser, script) -> None:
    # GIVEN the editor of a new template, opened from the list
    opened = browser.get("/templates?new=welcome", follow_redirects=False)
    assert opened.headers["location"] == "/templates/welcome"
    page = browser.get("/templates/welcome")
    assert "A new template" in page.text
    form = {
        "csrf": _csrf(page.text), "version": "", "language": "",
        "subject": "Welcome, {{ name }}", "text": "Hello {{ name }}",
        "html": "<p>Hello <b>{{ name }}</b></p>", "example": '{"name": "<Mio>"}',
    }  # fmt: skip
    # WHEN the draft is previewed: rendered on the server, nothing saved
    shown = browser.post("/templates/welcome", data={**form, "action": "preview"})
    assert shown.status_code == 200
    assert "Welcome, &lt;Mio&gt;" in shown.text
    frame = re.search(r'src="(/template-preview/welcome\?draft=[^"]+)"', shown.text)
    assert frame
    html = browser.get(frame.group(1).replace("&amp;", "&"))
    assert html.text == "<p>Hello <b>&lt;Mio&gt;</b></p>"
    assert "sandbox" in html.headers["content-security-policy"]
    assert script.get("/api/templates").json()["templates"] == []
    # AND saved: version 1, its variables read from it, the example kept
    saved = browser.post("/templates/welcome", data={**form, "action": "save"},
                         follow_redirects=False)  # fmt: skip
    assert saved.status_code == 303
    [listed] = script.get("/api/templates").json()["templates"]
    assert (listed["name"], listed["version"], listed["required"]) == ("welcome", 1, ["name"])
    editor = script.get("/api/templates/welcome").json()
    assert editor["preview"]["subject"] == "Welcome, <Mio>"
    assert '"<Mio>"' in editor["shown"]["example"]


def test_two_people_saving_one_template_at_once_lose_no_edit_silently(browser, admin) -> None:
    from dispatcher.ops.templates import save_template
    from dispatcher.templates.version import TemplateVersion

    save_template(admin.templates, TemplateVersion("notice", 0, subject="A", text="a"))
    # GIVEN two people with the editor open on version 1
    first = browser.get("/templates/notice").text
    second = browser.get("/templates/notice").text
    edit = {"subject": "B", "text": "b", "html": "", "example": "{}", "action": "save"}
    # WHEN both save
    saved = browser.post(
        "/templates/notice",
        data={**edit, "csrf": _csrf(first), "version": "1"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    mine = {**edit, "subject": "C", "csrf": _csrf(second), "version": "1"}
    late = browser.post("/templates/notice", data=mine)
    # THEN the second is told, with its edit shown again, and nothing of it was written
    assert late.status_code == 409
    assert "saved meanwhile" in late.text
    assert 'value="C"' in late.text
    assert [v.subject for v in admin.templates.versions("notice")] == ["A", "B"]


def test_a_template_that_does_not_compile_is_refused_with_its_line(browser, script) -> None:
    page = browser.get("/templates/broken").text
    refused = browser.post("/templates/broken", data={
        "csrf": _csrf(page), "subject": "Hi", "text": "line one\n{% for x in %}",
        "example": "{}", "action": "save",
    })  # fmt: skip
    assert refused.status_code == 422
    assert "text line 2:" in refused.text
    assert script.get("/api/templates").json()["templates"] == []


def test_send_a_test_inserts_a_row_naming_the_version_with_the_example(
    browser, admin, table
) -> None:
    from dispatcher.ops.templates import save_template
    from dispatcher.templates.version import TemplateVersion

    version = TemplateVersion("order", 0, subject="Order {{ n }}", text="x", example={"n": 7})
    save_template(admin.templates, version)
    page = browser.get("/templates/order").text
    sent = browser.post("/template-test/order", data={
        "csrf": _csrf(page), "version": "1", "to": "Me@Example.com",
    }, follow_redirects=False)  # fmt: skip
    assert sent.status_code == 303
    row_id = sent.headers["location"].split("/rows/")[1].split("?")[0]
    row = table.get(row_id)
    assert (row["template"], row["to"]) == ({"S": "order@1"}, {"S": "me@example.com"})
    assert row["vars"] == {"M": {"n": {"N": "7"}}}
    bad = browser.post("/template-test/order", data={"csrf": _csrf(page), "to": "nope"})
    assert bad.status_code == 400


def test_the_suppressions_page_adds_with_a_reason_and_lifts_after_asking(
    browser, script, admin
) -> None:
    # GIVEN a person adds a newsletter-only entry, with its reason
    page = browser.get("/suppressions").text
    added = browser.post("/suppressions", data={
        "csrf": _csrf(page), "address": "Kai@Example.com", "scope": "newsletter",
        "reason": "asked by phone",
    }, follow_redirects=False)  # fmt: skip
    assert added.status_code == 303
    # THEN it is listed with its scope, why and who
    [entry] = script.get("/api/suppressions?q=kai").json()["entries"]
    assert (entry["address"], entry["scope"], entry["added_by"]) == (
        "kai@example.com", "newsletter", "console",
    )  # fmt: skip
    assert "asked by phone" in entry["why"]
    # WHEN they lift it: first asked, then done, kept with who
    asked = browser.get("/suppression-remove?address=kai%40example.com&scope=newsletter")
    assert "Lift the suppression of kai@example.com for newsletter mail" in asked.text
    lifted = browser.post("/suppression-remove", data={
        "csrf": _csrf(asked.text), "address": "kai@example.com", "scope": "newsletter",
    }, follow_redirects=False)  # fmt: skip
    assert lifted.status_code == 303
    assert script.get("/api/suppressions").json()["entries"] == []
    # AND a reason is required; a bad address or scope is a clear 400
    missing = script.post("/api/suppressions", json={"address": "a@example.com"})
    assert (missing.status_code, missing.json()["error"]) == (
        400,
        "reason: say why (it is kept with the entry)",
    )
    assert (
        script.post("/api/suppressions", json={"address": "nope", "reason": "x"}).status_code == 400
    )
    bad_scope = {"address": "a@example.com", "reason": "x", "scope": "Bad Scope"}
    assert script.post("/api/suppressions", json=bad_scope).status_code == 400


def test_a_paused_category_shows_on_the_overview_and_is_resumed_from_it(
    browser, script, admin, table
) -> None:
    from datetime import UTC, datetime

    from dispatcher.reputation.guard import ReputationGuard, Thresholds
    from tests.conftest import TABLE_NAMES

    guard = ReputationGuard(
        table=TABLE_NAMES["ReputationTable"], boto3_client=admin.store.client,
        thresholds=Thresholds(0.05, 0.003, 10),
    )  # fmt: skip
    admin.guard = guard
    guard.add("newsletter", datetime.now(UTC), sent=10, bounced=5)
    guard.assess("newsletter", datetime.now(UTC))
    table.put(row("p-1", category="newsletter", status="paused", error_kind="paused",
                  failed_at="2026-12-05T10:00:00.000Z", last_error="paused"))  # fmt: skip
    # THEN the overview says so, with the way to resume
    overview = browser.get("/").text
    assert "newsletter mail is paused" in overview
    assert "/resume?category=newsletter" in overview
    assert script.get("/api/rows?status=paused").json()["rows"][0]["id"] == "p-1"
    assert script.get("/api/overview").json()["counts"]["paused"] == 1
    # WHEN resumed: asked first, then done
    asked = browser.get("/resume?category=newsletter")
    done = browser.post("/resume", data={"csrf": _csrf(asked.text), "category": "newsletter"},
                        follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    assert guard.paused(("newsletter",)) == {}
    assert table.get("p-1")["revision"] == {"N": "1"}  # re-fired
    assert "newsletter mail is paused" not in browser.get("/").text
    assert script.post("/api/resume", json={"category": "newsletter"}).status_code == 409


def test_the_overview_counts_the_days_mail_by_category(script, dynamodb) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher.support.clock import iso_utc

    now = datetime.now(UTC)
    for n, (category, bounced) in enumerate(
        (("newsletter", True), ("newsletter", False), (None, False))
    ):
        values = {"delivery_id": str(n)}
        if category:
            values["category"] = category
        if bounced:
            values["bounce_type"] = "HARDERROR"
        put_history(dynamodb, row_id=f"c-{n}", sent_at=iso_utc(now - timedelta(minutes=n + 1)),
                    **values)  # fmt: skip
    by = script.get("/api/overview").json()["sent"]["day"]["by_category"]
    assert by == {
        "newsletter": {"sent": 2, "bounced": 1},
        "transactional": {"sent": 1, "bounced": 0},
    }
