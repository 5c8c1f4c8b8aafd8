"""The sandbox speaks blastengine's wire format and misbehaves on request."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from dispatcher.local.sandbox.model import Faults
from dispatcher.local.sandbox.server import Sandbox
from dispatcher.providers.blastengine.client import bearer_token

BODY = {
    "from": {"email": "f@example.com", "name": ""},
    "to": "t@example.com",
    "subject": "s",
    "encode": "UTF-8",
    "text_part": "hi",
}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(login_id="me", api_key="key") as running:
        yield running


def _post(sandbox: Sandbox, body: object = BODY, token: str | None = None) -> httpx.Response:
    token = token or bearer_token("me", "key")
    return httpx.post(
        sandbox.base_url + "/deliveries/transaction",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_an_accepted_mail_gets_a_delivery_id_and_is_listed(sandbox: Sandbox) -> None:
    response = _post(sandbox)

    assert response.status_code == 201
    assert response.json() == {"delivery_id": 1}
    root = sandbox.base_url.rsplit("/api/", 1)[0]
    assert httpx.get(root + "/sandbox/mails").json()["mails"][0]["payload"] == BODY
    assert "to=t@example.com" in httpx.get(root + "/").text


def test_a_wrong_token_is_401(sandbox: Sandbox) -> None:
    assert _post(sandbox, token=bearer_token("me", "wrong")).status_code == 401
    assert sandbox.mails == []


def test_a_malformed_request_is_400_in_blastenginess_error_shape(sandbox: Sandbox) -> None:
    response = _post(sandbox, {**BODY, "text_part": None, "cc": ["x"] * 11})

    assert response.status_code == 400
    assert set(response.json()["error_messages"]) == {"text_part", "cc"}


def test_faults_set_at_run_time_answer_500_and_429_with_retry_after(sandbox: Sandbox) -> None:
    root = sandbox.base_url.rsplit("/api/", 1)[0]
    httpx.post(root + "/sandbox/faults", json={"server_error": 1.0}).raise_for_status()
    assert _post(sandbox).status_code == 500

    httpx.post(
        root + "/sandbox/faults", json={"server_error": 0.0, "rate_limited": 1.0, "retry_after": 3}
    )
    response = _post(sandbox)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"


@pytest.mark.parametrize("window", ["fixed", "bucket"])
def test_the_rate_limit_refuses_requests_above_it(window: str) -> None:
    # 20 requests at once (sent one after another, a loaded machine could be slow enough for
    # the limit to allow more between them, and the test would measure the machine)
    with (
        Sandbox(
            login_id="me", api_key="key", faults=Faults(rate_limit=5, window=window)
        ) as sandbox,
        ThreadPoolExecutor(max_workers=20) as pool,
    ):
        started = time.monotonic()
        codes = list(pool.map(lambda _: _post(sandbox).status_code, range(20)))
        elapsed = time.monotonic() - started

    accepted = codes.count(201)
    assert accepted >= 5  # one second's worth
    if window == "bucket":  # no more than the rate refilled since
        assert accepted <= 5 + 5 * elapsed + 1
    else:  # no more than 5 in each one-second window the requests met
        assert accepted <= 5 * (math.ceil(elapsed) + 1)
    assert codes.count(429) == 20 - accepted
    assert sandbox.refused == 20 - accepted


def test_every_answer_carries_blastengines_rate_limit_headers() -> None:
    # (a bucket: three requests in a row could straddle a fixed window's reset)
    faults = Faults(rate_limit=2, window="bucket")
    with Sandbox(login_id="me", api_key="key", faults=faults) as sandbox:
        headers = {"Authorization": f"Bearer {bearer_token('me', 'key')}"}
        body = {
            "from": {"email": "shop@example.com"},
            "to": "alice@example.com",
            "subject": "s",
            "text_part": "t",
        }
        url = sandbox.base_url + "/deliveries/transaction"
        answers = [httpx.post(url, json=body, headers=headers, timeout=5) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    for answer in answers:
        assert "X-RateLimit-Remaining" in answer.headers
        assert "X-Rate-Limit-Retry-After-Seconds" in answer.headers
    assert answers[1].headers["X-RateLimit-Remaining"] == "0"
    assert float(answers[2].headers["X-Rate-Limit-Retry-After-Seconds"]) > 0


def test_an_accepted_mail_shows_in_the_results_only_after_the_lag() -> None:
    # GIVEN a sandbox whose look-ups lag half a second behind what it takes
    with Sandbox(login_id="me", api_key="key", faults=Faults(lookup_lag=0.5)) as sandbox:
        auth = {"Authorization": f"Bearer {bearer_token('me', 'key')}"}
        delivery_id = _post(sandbox).json()["delivery_id"]

        def results() -> list[object]:
            answer = httpx.get(
                sandbox.base_url + "/logs/mails/results",
                params={"email": "t@example.com"},
                headers=auth,
                timeout=5,
            )
            return answer.json()["data"]

        detail = sandbox.base_url + f"/deliveries/{delivery_id}"

        # THEN at once its delivery is known by id, but not in the results by recipient
        assert results() == []
        assert httpx.get(detail, headers=auth, timeout=5).json()["subject"] == "s"

        # THEN after the lag the results have it too
        time.sleep(0.6)
        assert [r["delivery_id"] for r in results()] == [delivery_id]  # type: ignore[index]

        # WHEN the look-ups are set down at run time, THEN they answer 503
        httpx.post(
            sandbox.base_url.split("/api/")[0] + "/sandbox/faults", json={"lookups_down": True}
        )
        assert httpx.get(detail, headers=auth, timeout=5).status_code == 503


def test_the_mail_log_gives_each_recipient_its_result_and_a_soft_error_a_later_sent() -> None:
    # GIVEN a sandbox with a bounce of each kind, whose soft errors are retried after 0.5 s
    rules = {"hard@x.example": "HARDERROR", "@drop.example": "DROP", "full@x.example": "SOFTERROR"}
    faults = Faults(lookup_lag=0, bounce=rules, webhook=False, soft_retry=0.5)
    with Sandbox(login_id="me", api_key="key", faults=faults) as sandbox:
        auth = {"Authorization": f"Bearer {bearer_token('me', 'key')}"}
        for to in ("ok@x.example", "hard@x.example", "a@drop.example", "full@x.example"):
            assert _post(sandbox, {**BODY, "to": to}).status_code == 201

        def results() -> dict[str, tuple[str, str]]:
            answer = httpx.get(sandbox.base_url + "/logs/mails/results", headers=auth, timeout=5)
            return {
                r["email"]: (r["status"], r["last_response_code"]) for r in answer.json()["data"]
            }

        # THEN each has its result, with a response code as a receiving server would give
        assert results() == {
            "ok@x.example": ("SENT", "250"),
            "hard@x.example": ("HARDERROR", "550"),
            "a@drop.example": ("DROP", "550"),
            "full@x.example": ("SOFTERROR", "452"),
        }
        # AND the soft error is delivered by a later retry, its result updated after it
        time.sleep(0.6)
        assert results()["full@x.example"] == ("SENT", "250")


def test_a_bounce_share_reports_that_share_of_the_mail_as_hard_bounces() -> None:
    faults = Faults(lookup_lag=0, webhook=False, bounce_share=0.5, seed=3)
    with Sandbox(login_id="me", api_key="key", faults=faults) as sandbox:
        auth = {"Authorization": f"Bearer {bearer_token('me', 'key')}"}
        for n in range(40):
            assert _post(sandbox, {**BODY, "to": f"r{n}@x.example"}).status_code == 201
        answer = httpx.get(sandbox.base_url + "/logs/mails/results", headers=auth, timeout=5)
        statuses = [r["status"] for r in answer.json()["data"]]
        assert 10 <= statuses.count("HARDERROR") <= 30
        assert set(statuses) == {"SENT", "HARDERROR"}
