"""Shared fixtures: fake AWS (moto), the tables from template.yaml, builders for records."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings
from moto import mock_aws

from dispatcher.local.dynamodb.tables import (
    BOUNCE_TABLE,
    HISTORY_TABLE,
    IDEMPOTENCY_TABLE,
    RATE_LIMIT_TABLE,
    REPUTATION_TABLE,
    SEND_TABLE,
    SENT_MAIL_TABLE,
    SUPPRESSION_TABLE,
    TEMPLATES_TABLE,
    create_tables,
)

# Shared, noisy machines: judge properties, not how fast examples are generated.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

EVENTS = Path(__file__).resolve().parents[1] / "events"
TABLE_NAMES = {
    SEND_TABLE: "send",
    HISTORY_TABLE: "history",
    IDEMPOTENCY_TABLE: "idempotency",
    SUPPRESSION_TABLE: "suppression",
    BOUNCE_TABLE: "bounces",
    RATE_LIMIT_TABLE: "limit",
    SENT_MAIL_TABLE: "sent-mail",
    TEMPLATES_TABLE: "templates",
    REPUTATION_TABLE: "reputation",
}
LOGIN_ID = "test-login"
API_KEY = "sk-test-DO-NOT-LOG-7f3a9c"
BASE_URL = "https://blastengine.test/api/v1"
#: The least environment a function starts with: its three tables, a sender, credentials.
FUNCTION_ENV = {
    "SEND_TABLE_NAME": "s",
    "HISTORY_TABLE_NAME": "h",
    "IDEMPOTENCY_TABLE_NAME": "i",
    "DEFAULT_FROM_EMAIL": "a@example.com",
    "BLASTENGINE_LOGIN_ID": "x",
    "BLASTENGINE_API_KEY": "y",
}


#: Test tiers by directory; the slow ones are marked so `make test-fast` can leave them out.
_SLOW_TIERS = {"e2e": "e2e", "fault": "fault"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in _SLOW_TIERS:
            item.add_marker(getattr(pytest.mark, _SLOW_TIERS[tier]))
            item.add_marker(pytest.mark.slow)


def load_event(name: str) -> dict[str, Any]:
    """One of the sample events under events/, exactly as Lambda would deliver it."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "MailDispatcherTest",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """A moto DynamoDB with the template's three tables."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, TABLE_NAMES)
        yield client


@pytest.fixture
def settings_kwargs() -> dict[str, Any]:
    return {
        "send_table_name": TABLE_NAMES[SEND_TABLE],
        "history_table_name": TABLE_NAMES[HISTORY_TABLE],
        "idempotency_table_name": TABLE_NAMES[IDEMPOTENCY_TABLE],
        "suppression_table_name": TABLE_NAMES[SUPPRESSION_TABLE],
        "templates_table_name": TABLE_NAMES[TEMPLATES_TABLE],
        "default_from_email": "noreply@example.com",
        "default_from_name": "Example",
        "blastengine_base_url": BASE_URL,
        "blastengine_login_id": LOGIN_ID,
        "blastengine_api_key": API_KEY,
        "rate_limit_rps": 1000.0,
        "send_concurrency": 4,
        "max_attempts": 8,
        "attempts_per_invocation": 3,
        "request_timeout_seconds": 5.0,
    }


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


_sequence = itertools.count(100)


def _image(values: dict[str, Any]) -> dict[str, Any]:
    """Plain Python values -> DynamoDB wire shape (strings, ints, lists, dicts)."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in values.items()}


def row(row_id: str = "row-1", **values: Any) -> dict[str, Any]:
    """A valid send row as plain values, overridable per attribute (None drops one)."""
    base: dict[str, Any] = {
        "id": row_id,
        "to": "alice@example.com",
        "subject": "Hello",
        "text": "Hi there",
    }
    base.update(values)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def stream_record() -> Callable[..., dict[str, Any]]:
    """Builds one Lambda-shaped DynamoDB stream record from plain row values."""

    def build(
        event_name: str = "INSERT",
        new: dict[str, Any] | None = None,
        old: dict[str, Any] | None = None,
        *,
        raw_new: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        new_image = raw_new if raw_new is not None else (_image(new) if new else None)
        old_image = _image(old) if old else None
        key_source = new_image or old_image or {}
        stream: dict[str, Any] = {
            "ApproximateCreationDateTime": 1764000000,
            "Keys": {"id": key_source.get("id", {"S": "row-1"})},
            "SequenceNumber": str(next(_sequence)).zfill(21),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if new_image is not None:
            stream["NewImage"] = new_image
        if old_image is not None:
            stream["OldImage"] = old_image
        return {
            "eventID": f"evt-{stream['SequenceNumber']}",
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": stream,
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/send/stream/x",
        }

    return build


def image(values: dict[str, Any]) -> dict[str, Any]:
    return _image(values)
