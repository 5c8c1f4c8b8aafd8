"""One-click unsubscribe: signed links on non-transactional mail, and the endpoint that
answers them (RFC 8058): a POST suppresses the address for the category, a GET only asks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from dispatcher.config.settings import Settings, SettingsError
from dispatcher.model.message import Message
from dispatcher.recipients.suppression import SuppressionList
from dispatcher.recipients.unsubscribe_links import UnsubscribeLinks
from dispatcher.unsubscribes.endpoint import unsubscribe_app
from tests.conftest import FUNCTION_ENV, TABLE_NAMES, row
from tests.functional.conftest import insert

KEY, OLD_KEY = "k" * 32, "o" * 32
BASE = "https://unsub.example"


def _links(*keys: str, max_age: timedelta = timedelta(days=365)) -> UnsubscribeLinks:
    return UnsubscribeLinks(base_url=BASE, keys=lambda: list(keys or (KEY,)), max_age=max_age)


def _message(**values: Any) -> Message:
    base = {"id": "n-1", "to": "Ume@Example.com", "subject": "s", "from_email": "a@example.com",
            "from_name": "", "text": "x", "category": "newsletter"}  # fmt: skip
    return Message(**{**base, **values})


def test_a_link_names_the_address_and_category_and_cannot_be_altered_or_outlive_its_age() -> None:
    links = _links()
    linked = links.link(_message())
    assert linked.list_unsubscribe_url is not None
    token = linked.list_unsubscribe_url.removeprefix(f"{BASE}/u/")
    asked = links.read(token)
    assert asked is not None
    assert (asked.address, asked.category) == ("ume@example.com", "newsletter")
    assert links.read(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert links.read("not-a-token") is None
    assert _links(max_age=timedelta(seconds=-1)).read(token) is None  # expired
    # transactional mail, and mail with a link of its own, keep theirs
    assert links.link(_message(category="transactional")).list_unsubscribe_url is None
    own = _message(list_unsubscribe_url="https://app.example/u/7")
    assert links.link(own).list_unsubscribe_url == "https://app.example/u/7"


def test_keys_rotate_the_newest_signs_and_every_one_is_accepted() -> None:
    old_token = _links(OLD_KEY).token("a@example.com", "newsletter")
    assert _links(KEY, OLD_KEY).read(old_token) is not None  # during the rotation
    assert _links(KEY).read(old_token) is None  # once the old key is dropped
    new_token = _links(KEY, OLD_KEY).token("a@example.com", "newsletter")
    assert _links(KEY).read(new_token) is not None  # signed with the newest


def test_a_short_signing_key_stops_the_function_at_start_naming_it() -> None:
    settings = Settings.from_env(
        {**FUNCTION_ENV, "UNSUBSCRIBE_BASE_URL": BASE, "UNSUBSCRIBE_KEYS": "short"}
    )
    with pytest.raises(SettingsError, match="UNSUBSCRIBE_KEYS: key 1 is shorter than 32 bytes"):
        UnsubscribeLinks.from_settings(settings)


def test_a_newsletter_row_carries_the_link_and_a_transactional_one_none(
    make_dispatcher, table, stream_record, invoke, blastengine
) -> None:
    dispatcher = make_dispatcher(
        mail_categories="newsletter", unsubscribe_base_url=BASE, unsubscribe_keys=KEY
    )
    invoke(
        dispatcher,
        insert(table, stream_record, row("n-1", category="newsletter")),
        insert(table, stream_record, row("t-1")),
    )
    links = sorted(p.get("list_unsubscribe", {}).get("url", "") for _, _, p in blastengine.accepted)
    assert links[0] == ""  # the transactional row
    assert links[1].startswith(f"{BASE}/u/")  # the newsletter's, signed for its address
    asked = _links().read(links[1].removeprefix(f"{BASE}/u/"))
    assert asked is not None
    assert (asked.address, asked.category) == ("alice@example.com", "newsletter")


def _request(method: str, token: str, body: str = "", content_type: str = "") -> dict[str, Any]:
    headers = {"content-type": content_type} if content_type else {}
    headers["content-length"] = str(len(body.encode()))
    return {
        "version": "2.0", "rawPath": f"/u/{token}", "rawQueryString": "", "headers": headers,
        "requestContext": {"http": {"method": method, "path": f"/u/{token}",
                                    "sourceIp": "192.0.2.1"}, "stage": "$default"},
        "body": body, "isBase64Encoded": False,
    }  # fmt: skip


@pytest.fixture
def endpoint(dynamodb: Any) -> tuple[Any, SuppressionList, str]:
    suppressions = SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb)
    links = _links()
    token = links.token("Ume@example.com", "newsletter")
    return unsubscribe_app(links, suppressions, None), suppressions, token


FORM = "application/x-www-form-urlencoded"


def test_a_one_click_post_suppresses_the_category_once_and_says_so(endpoint) -> None:
    app, suppressions, token = endpoint
    done = app.resolve(_request("POST", token, "List-Unsubscribe=One-Click", FORM), None)
    assert done["statusCode"] == 200
    assert json.loads(done["body"]) == {"message": "unsubscribed from newsletter mail"}
    [entry] = list(suppressions.all())
    assert (entry.address, entry.scope, entry.reason) == (
        "ume@example.com",
        "newsletter",
        "UNSUBSCRIBE",
    )
    again = app.resolve(_request("POST", token, "List-Unsubscribe=One-Click", FORM), None)
    assert again["statusCode"] == 200
    assert len(list(suppressions.all())) == 1


def test_a_multipart_one_click_body_is_rfc_8058s_too(endpoint) -> None:
    app, suppressions, token = endpoint
    body = ('--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            "One-Click\r\n--b--\r\n")  # fmt: skip
    done = app.resolve(_request("POST", token, body, "multipart/form-data; boundary=b"), None)
    assert done["statusCode"] == 200
    assert [e.scope for e in suppressions.all()] == ["newsletter"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("", 400),
        ("List-Unsubscribe=One-Click&x=1", 400),
        ("unsubscribe=yes", 400),
        ("List-Unsubscribe=One-Click" + "&pad=" + "x" * 4096, 413),
    ],
)
def test_a_body_other_than_rfc_8058s_is_refused_and_writes_nothing(endpoint, body, status) -> None:
    app, suppressions, token = endpoint
    assert app.resolve(_request("POST", token, body, FORM), None)["statusCode"] == status
    assert list(suppressions.all()) == []


def test_a_get_only_asks_and_a_bad_token_is_not_found(endpoint) -> None:
    app, suppressions, token = endpoint
    page = app.resolve(_request("GET", token), None)
    assert page["statusCode"] == 200
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page["body"]
    assert "ume@example.com" in page["body"]
    assert "default-src 'none'" in page["headers"]["Content-Security-Policy"]
    assert list(suppressions.all()) == []  # a scanner following the link unsubscribes no one
    for bad in ("nope", token[:-3] + "xyz"):
        assert (
            app.resolve(_request("POST", bad, "List-Unsubscribe=One-Click", FORM), None)[
                "statusCode"
            ]
            == 404
        )
    assert list(suppressions.all()) == []
