"""template.yaml is the source of truth: the tables the code creates and the promises it makes."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from dispatcher.local.dynamodb.tables import load_template
from dispatcher.storage.store import STAMPED_INDEX, WAITING_INDEX

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def _param_default(value: Any) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return TEMPLATE["Parameters"][value["Ref"]].get("Default")
    return value


def test_the_sweepers_and_the_consoles_indexes_are_the_templates_sparse_indexes() -> None:
    indexes = {
        index["IndexName"]: [k["AttributeName"] for k in index["KeySchema"]]
        for index in RESOURCES["SendTable"]["Properties"]["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        WAITING_INDEX: ["status", "retry_at"],
        STAMPED_INDEX: ["status", "failed_at"],
    }


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
    events = function["Events"]
    assert {e["Type"] for e in events.values()} == {"ScheduleV2"}
    # every minute the sweep; hourly the bounce catch-up, told apart by its input
    assert json.loads(events["Reconcile"]["Properties"]["Input"]) == {"task": "reconcile"}
    assert "Input" not in events["Sweep"]["Properties"]


def _statements() -> list[dict[str, Any]]:
    out = []
    for resource in RESOURCES.values():
        for policy in resource.get("Properties", {}).get("Policies", []):
            if isinstance(policy, dict) and "Fn::If" in policy:
                policy = policy["Fn::If"][1]  # the statements a condition adds
            if isinstance(policy, dict):
                out.extend(policy.get("Statement", []))
    return out


def test_ses_sends_only_from_its_identity_and_configuration_set() -> None:
    [statement] = [s for s in _statements() if s.get("Sid") == "SendThroughSesIdentity"]
    assert sorted(statement["Action"]) == ["ses:SendEmail", "ses:SendRawEmail"]
    resources = [r["Fn::Sub"] for r in statement["Resource"]]
    assert [r.rsplit(":", 1)[1] for r in resources] == [
        "identity/${SesIdentity}",
        "configuration-set/${SesConfigurationSet}",
    ]
    # and only as the senders the parser allows (ALLOWED_FROM, or the default's domain)
    condition = statement["Condition"]["StringLike"]["ses:FromAddress"]
    assert condition["Fn::If"][0] == "HasAllowedFrom"
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["ALLOWED_FROM"] == {
        "Ref": "AllowedFrom"
    }
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert {
        "MAIL_PROVIDER",
        "FAILOVER_PROVIDER",
        "SES_RATE_LIMIT_RPS",
        "SES_CONFIGURATION_SET",
    } <= set(env)


def test_ses_events_reach_their_function_from_the_configuration_set_only() -> None:
    destination = RESOURCES["SesEventDestination"]["Properties"]["EventDestination"]
    condition, tracking, plain = destination["MatchingEventTypes"]["Fn::If"]
    assert condition == "TracksOpens"
    assert sorted(plain) == ["bounce", "complaint", "delivery", "deliveryDelay", "reject", "send"]
    assert sorted(tracking) == sorted([*plain, "open", "click"])
    # every event the destination may publish passes the rule to the function (EventBridge
    # names them by detail-type), and the function reads each (its eventType)
    detail_types = {
        "send": "Email Sent", "bounce": "Email Bounced", "complaint": "Email Complaint Received",
        "delivery": "Email Delivered", "deliveryDelay": "Email Delivery Delayed",
        "reject": "Email Rejected", "open": "Email Opened", "click": "Email Clicked",
    }  # fmt: skip
    rule = RESOURCES["SesEventsFunction"]["Properties"]["Events"]["SesEvents"]["Properties"]
    assert sorted(rule["Pattern"]["detail-type"]) == sorted(detail_types[t] for t in tracking)
    source = (ROOT / "dispatcher" / "bounces" / "ses_events.py").read_text()
    for event_type in tracking:
        assert f'"{event_type[0].upper()}{event_type[1:]}"' in source, event_type
    function = RESOURCES["SesEventsFunction"]["Properties"]
    assert function["Handler"] == "dispatcher.ses_handler.lambda_handler"
    pattern = function["Events"]["SesEvents"]["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.ses"]
    assert pattern["detail"]["mail"]["tags"]["ses:configuration-set"] == [
        {"Ref": "SesConfigurationSet"}
    ]
    # every SES-only resource exists only where SES is used
    for name in ("SesConfigurationSet", "SesEventDestination", "SesEventsFunction"):
        assert RESOURCES[name]["Condition"] == "UsesSes"
    # the handler module is importable from the package the functions ship
    assert (ROOT / "dispatcher" / "ses_handler.py").is_file()


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


def test_the_attachments_bucket_is_private_encrypted_expiring_and_read_only_to_the_function() -> (
    None
):
    props = RESOURCES["AttachmentsBucket"]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    [rule] = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"]
    s3 = [
        s
        for s in RESOURCES["DispatcherFunction"]["Properties"]["Policies"][0]["Statement"]
        if any(str(a).startswith("s3:") for a in s["Action"])
    ]
    assert [(s["Action"], s["Resource"]) for s in s3] == [
        (["s3:GetObject"], {"Fn::Sub": "${AttachmentsBucket.Arn}/*"})
    ]
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["ATTACHMENTS_BUCKET"] == {"Ref": "AttachmentsBucket"}
    assert "AttachmentsBucketName" in TEMPLATE["Outputs"]


def test_every_function_may_publish_delivery_events_to_the_stacks_bus_only() -> None:
    assert RESOURCES["DeliveryEventBus"]["Type"] == "AWS::Events::EventBus"
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["EVENT_BUS_NAME"] == {"Ref": "DeliveryEventBus"}
    publishing = [s for s in _statements() if s.get("Sid") == "DeliveryEvents"]
    assert len(publishing) == 5  # dispatcher, sweeper, webhook, SES events, unsubscribe
    for statement in publishing:
        assert statement["Action"] == ["events:PutEvents"]
        assert statement["Resource"] == {"Fn::GetAtt": ["DeliveryEventBus", "Arn"]}
    assert TEMPLATE["Outputs"]["DeliveryEventBusName"]["Value"] == {"Ref": "DeliveryEventBus"}


def test_the_dashboard_charts_only_metrics_the_code_emits() -> None:
    import re

    from dispatcher.model.row import PROVIDERS, ErrorKind

    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "1", body))["widgets"]
    named = {
        line[1]
        for w in widgets
        for line in w["properties"]["metrics"]
        if isinstance(line[0], str) and line[0] == "MailDispatcher"
    }
    source = "\n".join(p.read_text() for p in (ROOT / "dispatcher").rglob("*.py"))
    for name in named:
        kind, _, suffix = name.partition("_")
        if suffix:  # Failed_<kind>, Sent_<provider>: f-strings over known values
            assert suffix in {k.value for k in ErrorKind} | set(PROVIDERS), name
            assert f'name=f"{kind}_{{' in source, name
        else:  # a literal metric name: add_metric(name="...") or outcome.py's table
            assert f'"{name}"' in source, name
    assert {"RateLimitWait", "ProviderLatency", "Bounced"} <= named
    lambda_metrics = {
        line[1] for w in widgets for line in w["properties"]["metrics"] if line[0] == "AWS/Lambda"
    }
    assert lambda_metrics == {"IteratorAge", "ConcurrentExecutions"}


def test_the_reference_page_lists_every_parameter_and_nothing_else() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "template-parameters.md"
    listed = re.findall(r"^\| `(\w+)` \|", page.read_text(), re.M)
    assert sorted(listed) == sorted(TEMPLATE["Parameters"])
    assert len(listed) == len(set(listed))


def test_the_webhook_has_reserved_concurrency_of_its_own() -> None:
    """Whoever holds the URL can POST: a flood takes the webhook's reserved executions, never
    the concurrency the dispatcher needs."""
    webhook = RESOURCES["WebhookFunction"]["Properties"]
    assert webhook["ReservedConcurrentExecutions"] == {"Ref": "WebhookReservedConcurrency"}
    assert 1 <= _param_default(webhook["ReservedConcurrentExecutions"]) <= 10


def _writes_by_table(function: str) -> dict[str, set[str]]:
    """The DynamoDB write actions a function's policy allows, by table resource."""
    writes: dict[str, set[str]] = {}
    for policy in RESOURCES[function]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []):
            resources = statement["Resource"]
            for resource in resources if isinstance(resources, list) else [resources]:
                if isinstance(resource, dict) and "Fn::GetAtt" in resource:
                    table = (
                        resource["Fn::GetAtt"][0]
                        if isinstance(resource["Fn::GetAtt"], list)
                        else resource["Fn::GetAtt"].split(".")[0]
                    )
                    actions = statement["Action"]
                    writes.setdefault(table, set()).update(
                        a
                        for a in (actions if isinstance(actions, list) else [actions])
                        if a in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
                    )
    return writes


def test_the_bounce_paths_write_each_table_only_as_their_code_does() -> None:
    """BounceLedger puts an event and updates its orphan mark, updates a history item's
    bounce, puts a suppression: nothing else, in each function that runs it."""
    expected = {
        "BounceTable": {"dynamodb:PutItem", "dynamodb:UpdateItem"},
        "HistoryTable": {"dynamodb:UpdateItem"},
        "SuppressionTable": {"dynamodb:PutItem"},
    }
    for function in ("SweeperFunction", "WebhookFunction", "SesEventsFunction"):
        writes = _writes_by_table(function)
        for table, actions in expected.items():
            assert writes.get(table) == actions, (function, table, writes.get(table))
