from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest
import respx

from dispatcher.model.message import Encode, Message
from dispatcher.model.row import ErrorKind
from dispatcher.providers.blastengine.client import BlastengineClient, bearer_token
from dispatcher.providers.blastengine.credentials import Credentials
from dispatcher.providers.errors import (
    AmbiguousSendError,
    ConfigError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from tests.conftest import API_KEY, BASE_URL, LOGIN_ID

URL = BASE_URL + "/deliveries/transaction"
MESSAGE = Message(
    id="r1",
    to="alice@example.com",
    subject="Hello",
    from_email="shop@example.com",
    from_name="Shop",
    text="Hi __name__",
    html="<p>Hi</p>",
    cc=("c@example.com",),
    bcc=("b@example.com",),
    encode=Encode.ISO_2022_JP,
    insert_code={"name": "Alice"},
)
PLAIN = Message(
    id="r", to="a@example.com", subject="s", from_email="f@example.com", from_name="", text="t"
)


@pytest.fixture
def client() -> BlastengineClient:
    return BlastengineClient(base_url=BASE_URL, credentials=lambda: Credentials(LOGIN_ID, API_KEY))


def test_bearer_token_matches_blastengines_documented_example() -> None:
    # blastengine's docs: login id "blastengine" + key "ABCDEFG" gives this token.
    assert bearer_token("blastengine", "ABCDEFG") == (
        "MWYwZWVlOGZjMTIwNjc2ZmM1ODk0OTJmMTUyMjhlZmIzZDAyMWYwYWVlNGIwMDZlZmIyN2M3ZWUzM2Y1ZDZjOQ=="
    )


@respx.mock
def test_send_posts_the_wire_format_and_returns_the_delivery_id(client: BlastengineClient) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(201, json={"delivery_id": 42}))

    assert client.send(MESSAGE, timeout=5).delivery_id == "42"

    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {bearer_token(LOGIN_ID, API_KEY)}"
    assert json.loads(request.content) == {
        "from": {"email": "shop@example.com", "name": "Shop"},
        "to": "alice@example.com",
        "subject": "Hello",
        "encode": "ISO-2022-JP",
        "text_part": "Hi __name__",
        "html_part": "<p>Hi</p>",
        "cc": ["c@example.com"],
        "bcc": ["b@example.com"],
        "insert_code": [{"key": "__name__", "value": "Alice"}],
    }


@respx.mock
def test_absent_optional_parts_are_left_out(client: BlastengineClient) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(201, json={"delivery_id": 1}))
    plain = PLAIN

    client.send(plain, timeout=5)

    assert set(json.loads(route.calls.last.request.content)) == {
        "from",
        "to",
        "subject",
        "encode",
        "text_part",
    }


@respx.mock
@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, RejectedError, ErrorKind.REJECTED),
        (404, RejectedError, ErrorKind.REJECTED),
        (422, RejectedError, ErrorKind.REJECTED),
        (401, ConfigError, ErrorKind.CONFIG),
        (403, ConfigError, ErrorKind.CONFIG),
        (429, RateLimitedError, ErrorKind.RATE_LIMITED),
        (500, TransientError, ErrorKind.TRANSIENT),
        (503, TransientError, ErrorKind.TRANSIENT),
    ],
)
def test_each_status_maps_to_its_error_class(
    client: BlastengineClient, status: int, error: type, kind: ErrorKind
) -> None:
    body = {"error_messages": {"to": ["is on the suppression list"], "subject": ["too long"]}}
    respx.post(URL).mock(return_value=httpx.Response(status, json=body))

    with pytest.raises(error) as raised:
        client.send(MESSAGE, timeout=5)

    assert raised.value.kind is kind
    assert raised.value.http_status == status
    assert "to: is on the suppression list; subject: too long" in raised.value.message


@respx.mock
@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0.5", 0.5), (None, None)])
def test_429_carries_retry_after(
    client: BlastengineClient, header: str | None, seconds: float | None
) -> None:
    headers = {"Retry-After": header} if header else {}
    respx.post(URL).mock(return_value=httpx.Response(429, headers=headers))

    with pytest.raises(RateLimitedError) as raised:
        client.send(MESSAGE, timeout=5)

    assert raised.value.retry_after == seconds


@respx.mock
@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectTimeout("t"),
        httpx.ReadTimeout("t"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("x"),
    ],
)
def test_transport_failures_are_transient_and_never_leak_httpx(
    client: BlastengineClient, exc: Exception
) -> None:
    respx.post(URL).mock(side_effect=exc)

    with pytest.raises(TransientError) as raised:
        client.send(MESSAGE, timeout=5)

    assert raised.value.__cause__ is None
    assert not isinstance(raised.value, httpx.HTTPError)


@respx.mock
@pytest.mark.parametrize(
    ("exc", "ambiguous"),
    [
        # the request never left: retried as any transient failure
        (httpx.ConnectError("connection refused"), False),
        (httpx.ConnectError("[Errno -2] Name or service not known"), False),
        (httpx.ConnectTimeout("connect timed out"), False),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), False),
        (httpx.PoolTimeout("no free connection"), False),
        (httpx.WriteError("broken pipe"), False),
        (httpx.WriteTimeout("write timed out"), False),
        # it was written and no answer came: blastengine may have taken it
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.ReadError("connection reset by peer"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response"), True),
    ],
)
def test_a_request_that_may_have_been_taken_is_ambiguous_and_one_that_never_left_is_not(
    client: BlastengineClient, exc: Exception, ambiguous: bool
) -> None:
    respx.post(URL).mock(side_effect=exc)

    with pytest.raises(TransientError) as raised:
        client.send(MESSAGE, timeout=5)

    assert isinstance(raised.value, AmbiguousSendError) is ambiguous
    assert (raised.value.kind is ErrorKind.AMBIGUOUS) is ambiguous


@respx.mock
def test_a_gateway_timeout_is_ambiguous_other_5xx_are_not(client: BlastengineClient) -> None:
    respx.post(URL).mock(side_effect=[httpx.Response(504, json={}), httpx.Response(502, json={})])

    with pytest.raises(AmbiguousSendError):
        client.send(MESSAGE, timeout=5)
    with pytest.raises(TransientError) as raised:
        client.send(MESSAGE, timeout=5)
    assert not isinstance(raised.value, AmbiguousSendError)


@respx.mock
def test_2xx_without_a_delivery_id_is_still_a_success(client: BlastengineClient) -> None:
    respx.post(URL).mock(return_value=httpx.Response(201, text="ok"))
    assert client.send(MESSAGE, timeout=5).delivery_id is None


@respx.mock
def test_the_api_key_and_token_never_appear_in_an_error(client: BlastengineClient) -> None:
    token = bearer_token(LOGIN_ID, API_KEY)
    for response in (
        httpx.Response(401, json={"error_messages": {"auth": ["bad"]}}),
        httpx.Response(500),
        httpx.ConnectError("boom"),
    ):
        respx.post(URL).mock(side_effect=[response])
        with pytest.raises(Exception) as raised:  # noqa: PT011
            client.send(MESSAGE, timeout=5)
        text = f"{raised.value!r} {raised.value!s} {raised.value.__cause__!r}"
        assert API_KEY not in text
        assert token not in text


@respx.mock
def test_reply_to_and_list_unsubscribe_go_as_the_api_names_them(client: BlastengineClient) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(201, json={"delivery_id": 3}))
    message = replace(
        PLAIN,
        reply_to="help@example.com",
        reply_to_name="Support",
        list_unsubscribe_url="https://example.com/u",
        list_unsubscribe_mailto="mailto:u@example.com",
    )

    client.send(message, timeout=5)

    body = json.loads(route.calls.last.request.content)
    assert body["from"] == {"email": "f@example.com"}  # an empty name is left out
    assert body["reply_to"] == {"email": "help@example.com", "name": "Support"}
    assert body["list_unsubscribe"] == {
        "url": "https://example.com/u",
        "mailto": "mailto:u@example.com",
    }


@respx.mock
@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"X-Rate-Limit-Retry-After-Seconds": "42"}, 42.0),
        ({"X-Rate-Limit-Retry-After-Seconds": "42", "Retry-After": "50"}, 50.0),
        ({"Retry-After": "3"}, 3.0),
    ],
)
def test_a_429_waits_as_blastengines_own_header_says(
    client: BlastengineClient, headers: dict[str, str], seconds: float
) -> None:
    respx.post(URL).mock(return_value=httpx.Response(429, headers=headers))

    with pytest.raises(RateLimitedError) as raised:
        client.send(MESSAGE, timeout=5)

    assert raised.value.retry_after == seconds


@respx.mock
def test_an_answer_reports_the_rate_window(client: BlastengineClient) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-Rate-Limit-Retry-After-Seconds": "12"}
    respx.post(URL).mock(return_value=httpx.Response(201, json={"delivery_id": 9}, headers=headers))

    accepted = client.send(MESSAGE, timeout=5)

    assert (accepted.delivery_id, accepted.remaining, accepted.window_resets_in) == ("9", 0, 12.0)


@respx.mock
def test_a_delivery_is_looked_up_with_the_same_token(client: BlastengineClient) -> None:
    route = respx.get(BASE_URL + "/deliveries/42").mock(
        return_value=httpx.Response(200, json={"delivery_id": 42, "status": "SENT"})
    )
    respx.get(BASE_URL + "/deliveries/43").mock(
        return_value=httpx.Response(404, json={"error_messages": {"delivery_id": ["not found"]}})
    )

    assert client.delivery("42")["status"] == "SENT"
    assert route.calls.last.request.headers["Authorization"].startswith("Bearer ")
    with pytest.raises(RejectedError, match="delivery_id: not found"):
        client.delivery("43")
