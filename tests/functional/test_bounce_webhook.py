"""The bounce webhook as blastengine calls it: a function URL POST to /hooks/{secret}."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.bounces.ledger import BounceLedger
from dispatcher.bounces.webhook import webhook_app
from dispatcher.local.lambda_service.context import LocalContext
from dispatcher.recipients.suppression import SuppressionList
from tests.conftest import FUNCTION_ENV, TABLE_NAMES
from tests.functional.conftest import put_history

SECRET = "s3cr3t-" + "x" * 40


def _event(path: str, body: Any, method: str = "POST", raw: str | None = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
        "body": raw if raw is not None else json.dumps(body),
        "isBase64Encoded": False,
    }


def _bounce(kind: str = "HARDERROR", address: str = "dead@example.com") -> dict[str, Any]:
    return {
        "event": {
            "type": kind,
            "datetime": "2026-11-30T10:00:00+09:00",
            "detail": {
                "mailaddress": address,
                "subject": "s",
                "error_code": "550",
                "error_message": "user unknown",
                "delivery_id": 1128,
            },
        }
    }


@pytest.fixture
def app(dynamodb: Any) -> Any:
    ledger = BounceLedger(
        bounce_table=TABLE_NAMES["BounceTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        suppressions=SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb),
        boto3_client=dynamodb,
    )
    return webhook_app(ledger, lambda: SECRET)


def _post(app: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.resolve(event, LocalContext())
    return response["statusCode"], json.loads(response["body"])


def _written(dynamodb: Any) -> int:
    return sum(
        len(dynamodb.scan(TableName=TABLE_NAMES[t])["Items"])
        for t in ("BounceTable", "SuppressionTable")
    )


def test_several_events_in_one_post_are_all_recorded_once(app, dynamodb) -> None:
    # the delivery went to dead@ (a bounce suppresses only an address its mail went to)
    put_history(dynamodb, delivery_id="1128", to="dead@example.com")
    body = {"events": [_bounce(), _bounce("SOFTERROR", "full@example.com")]}

    first = _post(app, _event(f"/hooks/{SECRET}", body))
    again = _post(app, _event(f"/hooks/{SECRET}", body))

    assert first == (200, {"message": "2 event(s) recorded"})
    assert again[0] == 200
    assert len(dynamodb.scan(TableName=TABLE_NAMES["BounceTable"])["Items"]) == 2
    [suppressed] = dynamodb.scan(TableName=TABLE_NAMES["SuppressionTable"])["Items"]
    assert suppressed["address"] == {"S": "dead@example.com"}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/hooks/wrong-secret", "POST"),
        ("/hooks/", "POST"),
        ("/", "POST"),
        (f"/hooks/{SECRET}/extra", "POST"),
        (f"/hooks/{SECRET}", "GET"),
    ],
)
def test_a_wrong_secret_looks_like_any_unknown_path_and_writes_nothing(
    app, dynamodb, path: str, method: str
) -> None:
    status, body = _post(app, _event(path, {"events": [_bounce()]}, method=method))

    assert (status, body) == (404, {"message": "not found"})
    assert _written(dynamodb) == 0


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        ("not json", 400, "not JSON"),
        (json.dumps({"events": [{"event": {"type": "OPENED"}}]}), 400, "type must be one of"),
        (json.dumps({"nothing": 1}), 400, 'must be {"events"'),
        (json.dumps({"events": [_bounce()], "pad": "x" * 300_000}), 413, "over 262144 bytes"),
    ],
)
def test_a_bad_body_is_a_4xx_with_a_reason_and_writes_nothing(
    app, dynamodb, raw: str, status: int, reason: str
) -> None:
    got, body = _post(app, _event(f"/hooks/{SECRET}", None, raw=raw))

    assert got == status
    assert reason in body["message"]
    assert "dead@example.com" not in body["message"]
    assert _written(dynamodb) == 0


def test_a_store_failure_fails_the_whole_post_so_blastengine_retries(app, dynamodb) -> None:
    from botocore.exceptions import ClientError

    def throttle(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
            "Query",
        )

    dynamodb.meta.events.register("before-call.dynamodb.Query", throttle)

    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        app.resolve(_event(f"/hooks/{SECRET}", {"events": [_bounce()]}), LocalContext())


def test_a_body_nested_too_deep_is_a_400_not_a_crash(app: Any) -> None:
    # GIVEN a small body of arrays nested deeper than the JSON parser's stack
    raw = "[" * 100_000 + "]" * 100_000
    # WHEN it is POSTed to the right URL (one holding the URL can send anything)
    status, body = _post(app, _event(f"/hooks/{SECRET}", None, raw=raw))
    # THEN it is refused as a bad request, not answered 502 by a crashed function
    assert status == 400
    assert "nested too deep" in body["message"]


def test_a_static_webhook_secret_shorter_than_32_characters_stops_the_function() -> None:
    from dispatcher.config.settings import Settings, SettingsError

    base = FUNCTION_ENV
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET must be at least 32"):
        Settings.from_env({**base, "WEBHOOK_SECRET": "guessable"})
    assert Settings.from_env({**base, "WEBHOOK_SECRET": "x" * 32}).webhook_secret
