"""template.yaml is the source of truth: the tables the code creates and the promises it makes."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from dispatcher.local.tables import create_tables, load_template
from dispatcher.store import WAITING_INDEX

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def _param_default(value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return TEMPLATE["Parameters"][value["Ref"]].get("Default")
    return value


@pytest.fixture(scope="module")
def created() -> dict[str, dict[str, Any]]:
    """Each template table as moto reports it after create_tables."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        names = {
            logical: f"t-{logical}" for logical in ("SendTable", "HistoryTable", "IdempotencyTable")
        }
        create_tables(client, names)
        out = {}
        for logical, name in names.items():
            table = client.describe_table(TableName=name)["Table"]
            table["ttl"] = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            out[logical] = table
        return out


@pytest.mark.parametrize("logical", ["SendTable", "HistoryTable", "IdempotencyTable"])
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


def test_the_sweepers_index_is_the_templates_sparse_index() -> None:
    [index] = RESOURCES["SendTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == WAITING_INDEX
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["status", "retry_at"]


def test_the_stream_trigger_is_bounded_and_never_sees_our_deletes() -> None:
    function = RESOURCES["DispatcherFunction"]["Properties"]
    assert function["Handler"] == "dispatcher.handler.lambda_handler"
    esm = function["Events"]["SendTableStream"]["Properties"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 <= int(_param_default(esm["MaximumRetryAttempts"])) <= 10
    assert 0 < int(_param_default(esm["MaximumRecordAgeInSeconds"])) <= 86400
    assert _param_default(esm["BisectBatchOnFunctionError"]) == "true"
    assert esm["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    [pattern] = [json.loads(f["Pattern"]) for f in esm["FilterCriteria"]["Filters"]]
    assert pattern == {"eventName": ["INSERT", "MODIFY"]}


def test_the_sweeper_runs_on_a_schedule() -> None:
    function = RESOURCES["SweeperFunction"]["Properties"]
    assert function["Handler"] == "dispatcher.sweeper.lambda_handler"
    [event] = function["Events"].values()
    assert event["Type"] in ("Schedule", "ScheduleV2")


def _statements() -> list[dict[str, Any]]:
    out = []
    for resource in RESOURCES.values():
        for policy in resource.get("Properties", {}).get("Policies", []):
            if isinstance(policy, dict):
                out.extend(policy.get("Statement", []))
    return out


def test_policies_name_exact_actions_on_exact_resources() -> None:
    statements = _statements()
    assert statements
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions), statement
        assert statement["Resource"] != "*", statement


def test_no_secret_in_the_template() -> None:
    text = (ROOT / "template.yaml").read_text()
    assert "BLASTENGINE_API_KEY" not in text
    assert "BLASTENGINE_LOGIN_ID" not in text
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert "BLASTENGINE_CREDENTIALS_PARAMETER" in env


def test_every_output_has_a_description() -> None:
    outputs = TEMPLATE["Outputs"]
    for name in (
        "SendTableName",
        "HistoryTableName",
        "IdempotencyTableName",
        "SendTableStreamArn",
        "DispatcherFunctionName",
        "SweeperFunctionName",
        "DispatchFailureQueueUrl",
    ):
        assert outputs[name]["Description"]


def test_lambda_requirements_are_the_projects_own_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lambda_reqs = [
        line.strip()
        for line in (ROOT / "lambda-requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert set(lambda_reqs) <= set(project)
    names = {re.split(r"[\[<>=]", r)[0] for r in set(project) - set(lambda_reqs)}
    assert names == {"typer", "rich"}  # the CLI's, not the functions'
