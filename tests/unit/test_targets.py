"""--stack finds a deployed stack's tables from its CloudFormation outputs."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from dispatcher.ops import targets
from dispatcher.ops.targets import TargetError, deployed_stack


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    client = boto3.client(
        "cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    real = targets._client

    def fake(service: str, *args: Any, **kwargs: Any) -> Any:
        return client if service == "cloudformation" else real(service, *args, **kwargs)

    monkeypatch.setattr(targets, "_client", fake)
    return stubber


def _stack(outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "mail",
                "CreationTime": "2026-11-24T00:00:00Z",
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def test_the_tables_come_from_the_stacks_outputs(cloudformation: Stubber) -> None:
    cloudformation.add_response(
        "describe_stacks",
        _stack({"SendTableName": "mail-SendTable-1", "HistoryTableName": "mail-HistoryTable-1"}),
        {"StackName": "mail"},
    )
    with cloudformation:
        target = deployed_stack("mail")

    assert target.admin.store.send_table == "mail-SendTable-1"
    assert target.admin.store.history_table == "mail-HistoryTable-1"
    assert target.sandbox_url is None


def test_an_unknown_stack_is_a_clear_error(cloudformation: Stubber) -> None:
    cloudformation.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id nope does not exist"
    )
    with cloudformation, pytest.raises(TargetError, match="does not exist"):
        deployed_stack("nope")


def test_a_stack_without_our_outputs_is_refused(cloudformation: Stubber) -> None:
    cloudformation.add_response("describe_stacks", _stack({"Other": "x"}))
    with cloudformation, pytest.raises(TargetError, match="SendTableName"):
        deployed_stack("other")
