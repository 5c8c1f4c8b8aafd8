"""The local DynamoDB endpoint keeps DynamoDB's transaction semantics, cheaply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dispatcher.local.dynamodb_server import DynamoDBServer
from dispatcher.local.tables import create_tables


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    server = DynamoDBServer().start()
    try:
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )
        create_tables(dynamodb, {"SendTable": "s", "HistoryTable": "h", "IdempotencyTable": "i"})
        yield dynamodb
    finally:
        server.stop()


def _move(client: Any, row_id: str, subject: str) -> None:
    client.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": "h",
                    "Key": {"id": {"S": row_id}, "sent_at": {"S": "t"}},
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "s"},
                    "ExpressionAttributeValues": {":s": {"S": subject}},
                }
            },
            {
                "Delete": {
                    "TableName": "s",
                    "Key": {"id": {"S": row_id}},
                    "ConditionExpression": "#sub = :sub",
                    "ExpressionAttributeNames": {"#sub": "subject"},
                    "ExpressionAttributeValues": {":sub": {"S": subject}},
                }
            },
        ]
    )


def test_a_transaction_applies_all_its_writes(client: Any) -> None:
    client.put_item(TableName="s", Item={"id": {"S": "ok"}, "subject": {"S": "A"}})

    _move(client, "ok", "A")

    assert "Item" not in client.get_item(TableName="s", Key={"id": {"S": "ok"}})
    assert client.get_item(TableName="h", Key={"id": {"S": "ok"}, "sent_at": {"S": "t"}})["Item"]


def test_a_cancelled_transaction_rolls_back_the_writes_it_had_applied(client: Any) -> None:
    # GIVEN a row and an old history item, and a transaction whose second write's condition
    # fails after its first write was applied
    client.put_item(TableName="s", Item={"id": {"S": "no"}, "subject": {"S": "edited"}})
    client.put_item(
        TableName="h", Item={"id": {"S": "no"}, "sent_at": {"S": "t"}, "s": {"S": "before"}}
    )

    with pytest.raises(ClientError) as raised:
        _move(client, "no", "original")

    # THEN nothing of it remains
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    history = client.get_item(TableName="h", Key={"id": {"S": "no"}, "sent_at": {"S": "t"}})
    assert history["Item"]["s"]["S"] == "before"
    assert client.get_item(TableName="s", Key={"id": {"S": "no"}})["Item"]["subject"]["S"] == (
        "edited"
    )
