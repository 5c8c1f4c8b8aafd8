"""The adapters onto moto's internals still fit the moto that is installed.

If an upgrade changes what :mod:`dispatcher.local.dynamodb.moto_transactions` relies on, these fail:
the pinned version, the whole-table deep copy it replaces, and DynamoDB's all-or-nothing
transactions with the items restored; and if :mod:`~dispatcher.local.dynamodb.moto_expressions`
no longer gives moto's own tokens, or lets one request's values reach another's; and if
:mod:`~dispatcher.local.dynamodb.moto_retention` answers otherwise than moto.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb import models
from moto.dynamodb.models.table import Table

from dispatcher.local.dynamodb import moto_transactions
from dispatcher.local.dynamodb.tables import create_tables
from tests.fakes import move_row

NAMES = {"SendTable": "s", "HistoryTable": "h", "IdempotencyTable": "i"}


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, NAMES)
        for n in range(200):  # a history worth copying
            dynamodb.put_item(TableName="h", Item={"id": {"S": f"old-{n}"}, "sent_at": {"S": "t"}})
        yield dynamodb


@pytest.fixture
def table_copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    copies: list[str] = []

    def counted(self: Table, memo: Any) -> Table:
        copies.append(self.name)
        return self  # enough for the count; rollback is checked on the adapted path

    monkeypatch.setattr(Table, "__deepcopy__", counted, raising=False)
    return copies


def _original() -> Any:
    method = models.DynamoDBBackend.transact_write_items
    return getattr(method, "__wrapped__", method)


def test_the_installed_moto_is_the_version_the_adapter_was_written_for() -> None:
    assert moto.__version__ == moto_transactions.MOTO_VERSION


def test_moto_still_reaches_deepcopy_through_its_module_global() -> None:
    source = inspect.getsource(_original())
    assert "copy.deepcopy(" in source
    assert "self.tables[table_name]" in source
    assert models.copy.__name__ == "copy"


def test_unadapted_moto_copies_every_table_a_transaction_names(
    client: Any, table_copies: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN moto's own method, as an upgrade might bring it back
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", _original())
    client.put_item(TableName="s", Item={"id": {"S": "r"}, "subject": {"S": "A"}})

    move_row(client, "r", "A")

    # THEN it copied both tables whole: what the adapter exists to avoid
    assert sorted(table_copies) == ["h", "s"]


def test_adapted_transactions_copy_no_table(client: Any, table_copies: list[str]) -> None:
    moto_transactions.install()
    client.put_item(TableName="s", Item={"id": {"S": "r"}, "subject": {"S": "A"}})

    move_row(client, "r", "A")

    assert table_copies == []
    assert "Item" not in client.get_item(TableName="s", Key={"id": {"S": "r"}})
    assert client.get_item(TableName="h", Key={"id": {"S": "r"}, "sent_at": {"S": "t"}})["Item"]


def test_an_adapted_cancelled_transaction_restores_what_it_had_written(client: Any) -> None:
    # GIVEN a history item and a row whose condition fails after the history was updated
    moto_transactions.install()
    client.put_item(TableName="s", Item={"id": {"S": "no"}, "subject": {"S": "edited"}})
    client.put_item(
        TableName="h", Item={"id": {"S": "no"}, "sent_at": {"S": "t"}, "s": {"S": "before"}}
    )
    client.put_item(TableName="s", Item={"id": {"S": "new"}, "subject": {"S": "x"}})

    with pytest.raises(ClientError) as raised:
        move_row(client, "no", "original")
    with pytest.raises(ClientError):
        move_row(client, "absent", "x")  # an item that did not exist is removed again

    # THEN nothing of either remains, and DynamoDB's error and reasons are intact
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in raised.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    history = client.get_item(TableName="h", Key={"id": {"S": "no"}, "sent_at": {"S": "t"}})
    assert history["Item"]["s"]["S"] == "before"
    assert "Item" not in client.get_item(
        TableName="h", Key={"id": {"S": "absent"}, "sent_at": {"S": "t"}}
    )
    assert client.get_item(TableName="s", Key={"id": {"S": "no"}})["Item"]["subject"]["S"] == (
        "edited"
    )
    assert moto_transactions.installed()


def test_a_different_moto_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", _original())
    monkeypatch.setattr(moto, "__version__", "5.3.0")

    with pytest.raises(RuntimeError, match=r"moto 5\.2\.5, found 5\.3\.0"):
        moto_transactions.install()


# The expression cache (dispatcher.local.dynamodb.moto_expressions)

CONDITIONS = [
    "attribute_not_exists(#id)",
    "#s = :s AND (attribute_not_exists(#t) OR #t <> :t) AND size(#b) <= :n",
    "#a.#b[0] IN (:x, :y) OR NOT begins_with(#c, :p) AND #d BETWEEN :lo AND :hi",
]


def test_cached_condition_tokens_are_moto_own_fresh_each_time() -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    from dispatcher.local.dynamodb import moto_expressions

    moto_expressions.install()
    lex = ConditionExpressionParser._lex_condition_expression
    for expression in CONDITIONS:
        parser = ConditionExpressionParser(expression, None, None)
        first, again = lex(parser), lex(parser)
        assert list(first) == list(lex.__wrapped__(parser))  # type: ignore[attr-defined]
        assert all(
            a is not b and a.children is not b.children for a, b in zip(first, again, strict=True)
        )


def test_cached_expressions_still_apply_each_request_own_values(client: Any) -> None:
    from dispatcher.local.dynamodb import moto_expressions

    moto_expressions.install()
    assert moto_expressions.installed()

    def update(row_id: str, subject: str, expected: str) -> None:
        client.update_item(
            TableName="s",
            Key={"id": {"S": row_id}},
            UpdateExpression="SET #s = :s",
            ConditionExpression="attribute_not_exists(#s) OR #s = :old",
            ExpressionAttributeNames={"#s": "subject"},
            ExpressionAttributeValues={":s": {"S": subject}, ":old": {"S": expected}},
        )

    # WHEN one update and one condition text is sent with different values, again and again
    for n in range(3):
        update(f"r{n}", f"first {n}", "-")
        update(f"r{n}", f"second {n}", f"first {n}")

    # THEN each item has its own values, and a condition on a value it does not hold fails
    for n in range(3):
        item = client.get_item(TableName="s", Key={"id": {"S": f"r{n}"}})["Item"]
        assert item["subject"]["S"] == f"second {n}"
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        update("r0", "third", "first 0")
    with pytest.raises(ClientError, match="ValidationException"):  # a bad text is still refused
        client.update_item(
            TableName="s",
            Key={"id": {"S": "r0"}},
            UpdateExpression="SET #s = = :s",
            ExpressionAttributeNames={"#s": "subject"},
            ExpressionAttributeValues={":s": {"S": "x"}},
        )


# The retention check (dispatcher.local.dynamodb.moto_retention)


def test_the_one_attribute_retention_check_answers_as_moto_does() -> None:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    from dispatcher.local.dynamodb import moto_retention

    moto_retention.install()
    assert moto_retention.installed()
    adapted = SQSBackend.is_message_valid_based_on_retention_period
    original = adapted.__wrapped__  # type: ignore[attr-defined]
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="tap", Attributes={"MessageRetentionPeriod": "60"})[
            "QueueUrl"
        ]
        sqs.send_message(QueueUrl=url, MessageBody="kept")
        sqs.send_message(QueueUrl=url, MessageBody="expired")
        from moto.sqs.models import sqs_backends

        backend = sqs_backends["123456789012"]["us-east-1"]
        kept, expired = list(backend.get_queue("tap")._messages)
        expired.sent_timestamp = int((unix_time() - 61) * 1000)

        # THEN both answer alike: kept within the queue's 60 s, not past it
        for message, valid in ((kept, True), (expired, False)):
            assert adapted(backend, "tap", message) is valid
            assert original(backend, "tap", message) is valid
        # and a receive hands out the kept one (moto stops at the first expired, as before)
        bodies = [
            m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        ]
        assert bodies == ["kept"]
