"""The local DynamoDB endpoint keeps DynamoDB's transaction semantics, cheaply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dispatcher.local.dynamodb.server import DynamoDBServer
from dispatcher.local.dynamodb.tables import create_tables
from tests.fakes import move_row


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


def test_a_transaction_applies_all_its_writes(client: Any) -> None:
    client.put_item(TableName="s", Item={"id": {"S": "ok"}, "subject": {"S": "A"}})

    move_row(client, "ok", "A")

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
        move_row(client, "no", "original")

    # THEN nothing of it remains
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    history = client.get_item(TableName="h", Key={"id": {"S": "no"}, "sent_at": {"S": "t"}})
    assert history["Item"]["s"]["S"] == "before"
    assert client.get_item(TableName="s", Key={"id": {"S": "no"}})["Item"]["subject"]["S"] == (
        "edited"
    )


@pytest.mark.parametrize(
    "item",
    [
        {"insert_code": {"M": {"": {"S": "x"}}}},  # the reported poison row
        {"deep": {"L": [{"M": {"a": {"M": {"": {"NULL": True}}}}}]}},
        {"": {"S": "x"}},
    ],
)
def test_an_empty_attribute_name_is_refused_as_dynamodb_refuses_it(client: Any, item) -> None:
    with pytest.raises(ClientError) as raised:
        client.put_item(TableName="s", Item={"id": {"S": "poison-2"}, **item})

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "Empty attribute name" in raised.value.response["Error"]["Message"]
    assert "Item" not in client.get_item(TableName="s", Key={"id": {"S": "poison-2"}})


def test_an_index_key_of_the_wrong_type_is_refused(client: Any) -> None:
    # `status` keys the sweeper's index: DynamoDB refuses it as a number, by put or update
    with pytest.raises(ClientError, match="Type mismatch for Index Key status"):
        client.put_item(TableName="s", Item={"id": {"S": "n1"}, "status": {"N": "1"}})
    client.put_item(TableName="s", Item={"id": {"S": "n2"}, "status": {"S": "failed"}})
    with pytest.raises(ClientError, match="Type mismatch for Index Key status"):
        client.update_item(
            TableName="s",
            Key={"id": {"S": "n2"}},
            UpdateExpression="SET #a = :a, #s = :s",
            ExpressionAttributeNames={"#a": "attempts", "#s": "status"},
            ExpressionAttributeValues={":a": {"N": "1"}, ":s": {"N": "7"}},
        )

    assert client.get_item(TableName="s", Key={"id": {"S": "n2"}})["Item"]["status"] == {
        "S": "failed"
    }
    assert "Item" not in client.get_item(TableName="s", Key={"id": {"S": "n1"}})


def test_the_endpoint_counts_its_requests_and_their_cpu_by_operation(client: Any) -> None:
    import httpx

    from dispatcher.local.dynamodb.server import WRITES_PATH

    url = client.meta.endpoint_url + WRITES_PATH
    before = httpx.get(url).json()

    # WHEN two writes and a read are served
    client.put_item(TableName="s", Item={"id": {"S": "counted-1"}, "subject": {"S": "A"}})
    client.put_item(TableName="s", Item={"id": {"S": "counted-2"}, "subject": {"S": "B"}})
    client.get_item(TableName="s", Key={"id": {"S": "counted-1"}})
    after = httpx.get(url).json()

    # THEN each is counted under its operation, with the CPU it took, and in the totals
    def requests(reading: dict[str, Any], operation: str) -> int:
        return reading["by_operation"].get(operation, {}).get("requests", 0)

    assert (
        requests(after, "DynamoDB_20120810.PutItem") - requests(before, "DynamoDB_20120810.PutItem")
        == 2
    )
    assert (
        requests(after, "DynamoDB_20120810.GetItem") - requests(before, "DynamoDB_20120810.GetItem")
        == 1
    )
    assert after["by_operation"]["DynamoDB_20120810.PutItem"]["cpu_s"] > 0
    assert after["writes"] - before["writes"] == 2
    assert after["requests"] - before["requests"] == 3
    assert after["requests"] == sum(v["requests"] for v in after["by_operation"].values())
