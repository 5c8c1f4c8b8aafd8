"""The local endpoint's rules on their own: what DynamoDB refuses, by operation."""

from __future__ import annotations

import pytest

from dispatcher.local.dynamodb.rules import DynamoDBRules


@pytest.fixture
def rules() -> DynamoDBRules:
    rules = DynamoDBRules()
    rules.check(
        "CreateTable",
        {
            "TableName": "send",
            "AttributeDefinitions": [
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
            ],
        },
    )
    return rules


def test_valid_writes_pass(rules: DynamoDBRules) -> None:
    item = {"id": {"S": "a"}, "status": {"S": "failed"}, "m": {"M": {"k": {"L": []}}}}
    assert rules.check("PutItem", {"TableName": "send", "Item": item}) is None
    assert rules.check("PutItem", {"TableName": "other", "Item": {"status": {"N": "1"}}}) is None
    update = {
        "TableName": "send",
        "Key": {"id": {"S": "a"}},
        "UpdateExpression": "ADD #s :one",  # only SET assignments are typed here
        "ExpressionAttributeNames": {"#s": "revision"},
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }
    assert rules.check("UpdateItem", update) is None


@pytest.mark.parametrize(
    ("operation", "request_"),
    [
        ("PutItem", {"TableName": "send", "Item": {"id": {"S": "a"}, "x": {"M": {"": {}}}}}),
        (
            "BatchWriteItem",
            {"RequestItems": {"send": [{"PutRequest": {"Item": {"": {"S": "x"}}}}]}},
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": "send",
                            "ExpressionAttributeValues": {":v": {"M": {"": {"S": "x"}}}},
                        }
                    }
                ]
            },
        ),
        ("UpdateItem", {"TableName": "send", "ExpressionAttributeNames": {"#n": ""}}),
    ],
)
def test_empty_names_are_refused_wherever_a_request_carries_them(
    rules: DynamoDBRules, operation: str, request_: dict
) -> None:
    assert "Empty attribute name" in (rules.check(operation, request_) or "")


def test_key_types_are_checked_in_puts_and_set_assignments(rules: DynamoDBRules) -> None:
    put = {"TableName": "send", "Item": {"id": {"S": "a"}, "status": {"N": "1"}}}
    assert "Type mismatch for Index Key status Expected: S Actual: N" in (
        rules.check("PutItem", put) or ""
    )
    update = {
        "TableName": "send",
        "UpdateExpression": "SET attempts = :a, #st=:s REMOVE retry_at",
        "ExpressionAttributeNames": {"#st": "status"},
        "ExpressionAttributeValues": {":a": {"N": "1"}, ":s": {"BOOL": True}},
    }
    assert "Actual: BOOL" in (rules.check("UpdateItem", update) or "")
