"""The tables the local stack creates are the tables template.yaml declares."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from dispatcher.local.dynamodb.tables import create_tables, load_template

RESOURCES: dict[str, Any] = load_template()["Resources"]
TABLES = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::DynamoDB::Table"]


@pytest.fixture(scope="module")
def created() -> dict[str, dict[str, Any]]:
    """Each template table as moto reports it after create_tables."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        names = {logical: f"t-{logical}" for logical in TABLES}
        create_tables(client, names)
        out = {}
        for logical, name in names.items():
            table = client.describe_table(TableName=name)["Table"]
            table["ttl"] = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            out[logical] = table
        return out


@pytest.mark.parametrize("logical", TABLES)
def test_created_tables_match_the_template(logical: str, created: dict) -> None:
    props = RESOURCES[logical]["Properties"]
    table = created[logical]

    assert table["KeySchema"] == props["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(
        props["AttributeDefinitions"], key=str
    )
    got_indexes = {
        i["IndexName"]: (i["KeySchema"], i["Projection"]["ProjectionType"])
        for i in table.get("GlobalSecondaryIndexes", [])
    }
    want_indexes = {
        i["IndexName"]: (i["KeySchema"], i["Projection"]["ProjectionType"])
        for i in props.get("GlobalSecondaryIndexes", [])
    }
    assert got_indexes == want_indexes
    stream = props.get("StreamSpecification")
    assert table.get("StreamSpecification", {}).get("StreamViewType") == (
        stream["StreamViewType"] if stream else None
    )
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        assert table["ttl"]["AttributeName"] == ttl["AttributeName"]
        assert table["ttl"]["TimeToLiveStatus"] == "ENABLED"
    else:
        assert table["ttl"]["TimeToLiveStatus"] == "DISABLED"
