"""End to end over loopback: rows in through boto3, mail out through the sandbox."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import row
from tests.e2e.conftest import RunningStack, running_stack, start_stack, wait_for


def _row(row_id: str, subject: str, **extra: object) -> dict[str, object]:
    return row(row_id, **{"to": "someone@example.com", "subject": subject, "text": "Hi", **extra})


def test_the_ready_line_names_everything(stack: RunningStack) -> None:
    assert stack.ready["event"] == "ready"
    assert stack.ready["endpoint_url"].startswith("http://127.0.0.1:")
    assert stack.ready["provider_url"].startswith("http://127.0.0.1:")
    assert {"region", "send_table", "history_table", "idempotency_table"} <= set(stack.ready)


def test_the_ready_lines_env_runs_the_function_from_another_process(
    stack: RunningStack, tmp_path: Path
) -> None:
    # GIVEN a row the stack's own poller will also see
    env = stack.ready["env"]
    assert env["RATE_LIMIT_TABLE_NAME"]
    # the stack's account limit (200/s here), not the default: sharers agree on one R
    assert float(env["RATE_LIMIT_RPS"]) == 200
    assert "WEBHOOK_SECRET" not in env
    stack.put(_row("e2e-env", "e2e-env"))
    event = {
        "Records": [
            {
                "eventID": "1",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"id": {"S": "e2e-env"}},
                    "NewImage": {
                        "id": {"S": "e2e-env"},
                        "to": {"S": "someone@example.com"},
                        "subject": {"S": "e2e-env"},
                        "text": {"S": "Hi"},
                    },
                    "SequenceNumber": "1",
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
        ]
    }
    (tmp_path / "event.json").write_text(json.dumps(event))

    # WHEN another process runs the Lambda handler with nothing but that environment
    subprocess.run(
        [sys.executable, "-m", "dispatcher.ops.cli", "invoke", str(tmp_path / "event.json")],
        env={"PATH": os.environ["PATH"], **env},
        check=True,
        capture_output=True,
        timeout=60,
    )

    # THEN, racing the stack's own invocation of the same record, it was sent once
    wait_for(lambda: stack.history("e2e-env"), what="the history item")
    assert len(stack.mails("e2e-env")) == 1


def test_an_inserted_row_is_sent_moved_to_history_and_deleted(stack: RunningStack) -> None:
    stack.put(_row("e2e-insert", "e2e-insert"))

    wait_for(lambda: stack.history("e2e-insert"), what="the history item")
    assert stack.row("e2e-insert") is None
    [mail] = stack.mails("e2e-insert")
    assert mail["payload"]["to"] == "someone@example.com"


def test_an_invalid_row_stays_failed_with_its_reason_and_sends_nothing(
    stack: RunningStack,
) -> None:
    stack.put(_row("e2e-invalid", "e2e-invalid", to="nobody@"))

    row = wait_for(
        lambda: (r := stack.row("e2e-invalid")) and "status" in r and r, what="the failure stamp"
    )
    assert row["status"]["S"] == "failed"
    assert row["error_kind"]["S"] == "invalid"
    assert "to:" in row["last_error"]["S"]
    assert stack.mails("e2e-invalid") == []


def test_a_failed_row_edited_with_boto3_is_sent_once(stack: RunningStack) -> None:
    stack.put(_row("e2e-edit", "e2e-edit", to="edit@"))
    wait_for(lambda: (r := stack.row("e2e-edit")) and "status" in r, what="the failure")

    stack.update("e2e-edit", "SET #to = :to", {"#to": "to"}, {":to": {"S": "edit@example.com"}})

    wait_for(lambda: stack.history("e2e-edit"), what="the re-send")
    assert stack.row("e2e-edit") is None
    assert len(stack.mails("e2e-edit")) == 1


def test_a_row_deferred_by_a_failing_sandbox_is_sent_after_the_sweeper_refires_it(
    stack: RunningStack,
) -> None:
    # GIVEN the sandbox fails every request for this address
    stack.faults(fail_to=["flaky@example.com"])
    stack.put(_row("e2e-defer", "e2e-defer", to="flaky@example.com"))
    row = wait_for(
        lambda: (r := stack.row("e2e-defer")) and "status" in r and r, what="the deferral"
    )
    assert row["status"]["S"] == "deferred"
    assert row["error_kind"]["S"] == "transient"

    # WHEN the sandbox recovers and the row's time has come (its retry_at set to the past,
    # a bookkeeping-only edit that the dispatcher skips as its own echo)
    stack.faults(fail_to=[])
    stack.update(
        "e2e-defer", "SET #r = :r", {"#r": "retry_at"}, {":r": {"S": "2000-01-01T00:00:00.000Z"}}
    )

    # THEN the sweeper re-fires it and it is sent, once
    wait_for(lambda: stack.history("e2e-defer"), what="the sweeper's re-send")
    assert len(stack.mails("e2e-defer")) == 1
    assert stack.row("e2e-defer") is None


def test_retry_all_failed_resends_every_failed_row_once(stack: RunningStack) -> None:
    # GIVEN three rows the provider rejected (it refuses them while told to)
    stack.faults(fail_to=["reject@example.com"])
    ids = [f"e2e-retry-{i}" for i in range(3)]
    for row_id in ids:
        stack.put(_row(row_id, row_id, to="reject@example.com", revision=0))
    # 500s are transient: deferred, not failed. Make them fail for good: bump past the limit.
    for row_id in ids:
        wait_for(
            lambda row_id=row_id: (r := stack.row(row_id)) and "status" in r,
            what=f"{row_id} stamped",
        )
        stack.update(
            row_id,
            "SET #s = :s, #k = :k REMOVE #r",
            {"#s": "status", "#k": "error_kind", "#r": "retry_at"},
            {":s": {"S": "failed"}, ":k": {"S": "transient"}},
        )
    stack.faults(fail_to=[])

    # WHEN a person retries every failed row
    result = stack.cli("retry", "--all-failed", "--kind", "transient", "--json")

    # THEN each is re-fired and sent exactly once
    assert result.returncode == 0, result.stderr
    fired = {r["id"] for r in json.loads(result.stdout)["results"] if r["result"] == "re-fired"}
    assert set(ids) <= fired
    for row_id in ids:
        wait_for(lambda row_id=row_id: stack.history(row_id), what=f"{row_id} sent")
        assert len(stack.mails(row_id)) == 1


def test_200_rows_inserted_concurrently_are_all_sent_once(stack: RunningStack) -> None:
    # (the fault suite's big run does the same through faults; `make soak` at 10,000 rows)
    ids = [f"e2e-bulk-{i:03}" for i in range(200)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda row_id: stack.put(_row(row_id, row_id)), ids))

    wait_for(lambda: len(stack.mails("e2e-bulk-")) >= 200, timeout=180, what="200 mails")
    subjects = [m["payload"]["subject"] for m in stack.mails("e2e-bulk-")]
    assert sorted(subjects) == ids  # every row once: none lost, none twice
    wait_for(lambda: all(stack.row(i) is None for i in ids[-20:]), what="rows moved")
    left = [i for i in ids if stack.row(i) is not None]
    assert left == []


def test_a_fixed_window_provider_is_met_at_its_limit_without_429s(tmp_path: Path) -> None:
    # GIVEN a provider that takes 20 requests in each one-second window (blastengine's shape),
    # 50 ms away, and the account's limit set to it, as deployed
    with running_stack(
        tmp_path,
        *("--sandbox-window", "fixed", "--sandbox-rps", "20", "--sandbox-latency", "0.05"),
        env={"RATE_LIMIT_RPS": "20"},
    ) as paced:
        # WHEN 120 rows are inserted at once (six windows' worth)
        ids = [f"e2e-window-{i:03}" for i in range(120)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda row_id: paced.put(_row(row_id, row_id)), ids))

        # THEN every row is sent once, and fewer than 1% of the requests met a 429
        wait_for(lambda: len(paced.mails("e2e-window-")) >= 120, timeout=120, what="120 mails")
        subjects = sorted(m["payload"]["subject"] for m in paced.mails("e2e-window-"))
        assert subjects == ids
        stats = paced.sandbox.get("/sandbox/stats").json()
        assert stats["over_limit"] < 0.01 * stats["requests"], stats


def test_a_crashing_handler_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    # GIVEN a stack whose function crashes after 40% of its invocations
    with running_stack(tmp_path, "--crash-rate", "0.4", "--seed", "7") as crashing:
        ids = [f"e2e-crash-{i:02}" for i in range(60)]
        for row_id in ids:
            crashing.put(_row(row_id, row_id))

        # THEN every row is sent exactly once and leaves the send table
        wait_for(lambda: len(crashing.mails("e2e-crash-")) >= 60, timeout=120, what="60 mails")
        wait_for(lambda: all(crashing.row(i) is None for i in ids), timeout=60, what="rows moved")
        subjects = sorted(m["payload"]["subject"] for m in crashing.mails("e2e-crash-"))
        assert subjects == ids
        # and the crashes did happen, and nothing had to be given up
        assert "injected crash" in crashing.log.read_text()
        on_failure = crashing.state_dir / "on-failure.jsonl"
        assert not on_failure.exists() or on_failure.read_text() == ""


def test_sigterm_stops_everything_and_frees_the_ports(tmp_path: Path) -> None:
    running = start_stack(tmp_path)
    endpoint_port = int(running.ready["endpoint_url"].rsplit(":", 1)[1])
    sandbox_port = int(running.ready["provider_url"].split(":")[2].split("/")[0])

    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0

    assert not (running.state_dir / "local.json").exists()
    console_port = int(running.ready["console_url"].split(":")[2].split("/")[0])
    for port in (endpoint_port, sandbox_port, console_port):
        with socket.socket() as probe:
            # As a server restarting on the port binds (waitress, uvicorn and socketserver
            # all do): connections the stack closed linger in TIME_WAIT, a listener would not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # raises if still listening


def _children(pid: int) -> dict[int, str]:
    """The processes ``pid`` started, by pid: their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found[int(entry.name)] = command
    return found


def test_dynamodb_is_a_process_of_its_own_and_its_death_stops_the_stack(tmp_path: Path) -> None:
    # GIVEN a running stack: its DynamoDB endpoint is a child process, as DynamoDB is a
    # service apart from the function
    running = start_stack(tmp_path)
    [endpoint] = [
        pid
        for pid, cmd in _children(running.process.pid).items()
        if "dispatcher.local.dynamodb.server" in cmd
    ]

    # WHEN that process dies
    os.kill(endpoint, signal.SIGKILL)

    # THEN the stack says so and exits non-zero, rather than stay up half alive
    assert running.process.wait(timeout=30) == 2
    assert "the DynamoDB endpoint's process died (signal 9)" in running.log.read_text()


def test_a_stack_killed_hard_leaves_no_process_behind(tmp_path: Path) -> None:
    running = start_stack(tmp_path)
    children = _children(running.process.pid)
    assert children, "the stack runs its parts in processes of their own"

    running.process.send_signal(signal.SIGKILL)
    running.process.wait(timeout=10)

    # each child sees its stdin close and stops by itself
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
        timeout=20,
        what="the stack's processes to end",
    )


def test_provider_url_sends_to_an_external_blastengine_compatible_api(tmp_path: Path) -> None:
    from dispatcher.local.sandbox.server import Sandbox

    # GIVEN an external API (here another sandbox) and its credentials in the environment
    with (
        Sandbox(login_id="external", api_key="external-key") as external,
        running_stack(
            tmp_path,
            "--provider-url",
            external.base_url,
            env={"BLASTENGINE_LOGIN_ID": "external", "BLASTENGINE_API_KEY": "external-key"},
        ) as running,
    ):
        assert running.ready["provider_url"] == external.base_url
        running.put(_row("e2e-external", "e2e-external"))

        # THEN the mail reaches it, authenticated with those credentials
        wait_for(lambda: external.mails, what="the external API's mail")
        assert external.mails[0].payload["subject"] == "e2e-external"


def test_human_log_format_is_short_lines_and_a_bad_one_is_refused(tmp_path) -> None:
    import subprocess as sp

    from tests.e2e.conftest import DISPATCHER, running_stack, wait_for

    with running_stack(tmp_path, "--log-format", "human") as stack:
        stack.put({"id": "human-1", "to": "h@example.com", "subject": "h", "text": "x"})
        wait_for(lambda: stack.history("human-1"), what="the send")
        wait_for(lambda: "human-1" in stack.log.read_text(), what="the log line")
    lines = [line for line in stack.log.read_text().splitlines() if "human-1" in line]
    assert any(
        " sent " in line and "sent through blastengine as delivery" in line for line in lines
    )
    assert not [line for line in stack.log.read_text().splitlines() if line.startswith("{")]
    assert "sweep done" not in stack.log.read_text()  # idle sweeps say nothing

    bad = sp.run([*DISPATCHER, "--state-dir", str(tmp_path / "b"), "dev", "--log-format", "xml"],
                 capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "--log-format must be json or human" in bad.stderr


def test_delivery_events_reach_a_rule_made_on_the_stack_and_dispatcher_events(
    stack: RunningStack,
) -> None:
    import boto3

    # GIVEN an application's rule on the stack's bus, to its own queue
    bus = stack.ready["event_bus"]
    region, endpoint = stack.ready["region"], stack.ready["endpoint_url"]
    keys = {"aws_access_key_id": "e2e", "aws_secret_access_key": "e2e"}
    events = boto3.client("events", endpoint_url=endpoint, region_name=region, **keys)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region, **keys)
    queue = sqs.create_queue(QueueName="e2e-app-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="e2e-app",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["mail-dispatcher"], "detail-type": ["Mail Sent"]}),
    )
    events.put_targets(Rule="e2e-app", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    # WHEN a row is sent
    stack.put(_row("e2e-event", "e2e-event"))

    # THEN the application's queue gets its Mail Sent
    def received() -> list[dict]:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    bodies = wait_for(received, what="the application's event")
    [sent] = [b for b in bodies if b["detail"]["row_id"] == "e2e-event"]
    assert sent["detail-type"] == "Mail Sent"
    assert sent["detail"]["provider"] == "blastengine"

    # AND `dispatcher events` prints what the stack published
    def listed() -> list[dict]:
        shown = stack.cli("events", "--json")
        assert shown.returncode == 0, shown.stderr
        lines = [json.loads(line) for line in shown.stdout.splitlines()]
        return [e for e in lines if e["detail"]["row_id"] == "e2e-event"]

    [printed] = wait_for(listed, what="dispatcher events")
    assert printed["detail"]["event_id"] == sent["detail"]["event_id"]
    human = stack.cli("events")
    assert "Mail Sent" in human.stdout
    assert "e2e-event" in human.stdout


ROOT = Path(__file__).resolve().parents[2]
_SAM_RESOLVE = """
import json, sys
from samcli.local.lambdafn.env_vars import EnvironmentVariables
declared, overrides = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
env = EnvironmentVariables(
    function_name="DispatcherFunction", function_memory=256, function_timeout=120,
    function_handler="dispatcher.handler.lambda_handler",
    variables=declared, override_values=overrides.get("Parameters", {}),
)
print(json.dumps(env.resolve()))
"""


def test_sam_local_invoke_reads_the_stacks_env_vars_file_as_pointing_at_the_stack(
    stack: RunningStack,
) -> None:
    """No Docker here: SAM's own resolution (samcli's EnvironmentVariables, as `sam local
    invoke --env-vars` applies the file to the variables the template declares) is run on the
    file the stack wrote, and the function is then run with that environment."""
    import os
    import shutil
    import subprocess
    import sys

    import boto3

    from dispatcher.local.dynamodb.tables import load_template

    path = Path(stack.local["sam_env_file"])
    text = path.read_text()
    assert "BLASTENGINE_API_KEY" not in text
    template = load_template()
    declared = {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"]["DispatcherFunction"]["Properties"]
        .get("Environment", {})
        .get("Variables", {}),
    }
    declared = {k: "" if isinstance(v, dict) else str(v) for k, v in declared.items()}
    tools_python = Path(sys.executable).parents[2] / ".venv-tools" / "bin" / "python"
    if not tools_python.exists() or shutil.which("make") is None:
        pytest.skip("needs the SAM CLI (.venv-tools)")
    resolved = json.loads(
        subprocess.run(
            [str(tools_python), "-c", _SAM_RESOLVE, json.dumps(declared), str(path)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    port = stack.ready["endpoint_url"].rsplit(":", 1)[1]
    assert resolved["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{port}"
    assert resolved["SEND_TABLE_NAME"] == stack.ready["send_table"]
    assert resolved["BLASTENGINE_BASE_URL"].startswith("http://host.docker.internal:")
    parameter = resolved["BLASTENGINE_CREDENTIALS_PARAMETER"]

    # the credentials it names are on the stack's endpoint, as SSM SecureStrings
    ssm = boto3.client(
        "ssm", endpoint_url=stack.ready["endpoint_url"], region_name=stack.ready["region"],
        aws_access_key_id="e2e", aws_secret_access_key="e2e",
    )  # fmt: skip
    stored = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    assert set(json.loads(stored)) == {"login_id", "api_key"}

    # and the function, in that environment (the host as a container on this machine would
    # reach it), sends a row with the sample event's shape
    here = {k: v.replace("host.docker.internal", "127.0.0.1") for k, v in resolved.items()}
    here = {k: v for k, v in here.items() if v != ""}
    stack.put(_row("sam-env", "sam-env"))
    event = json.loads((ROOT / "events" / "insert.json").read_text())
    record = event["Records"][0]
    record["dynamodb"]["Keys"] = {"id": {"S": "sam-env"}}
    record["dynamodb"]["NewImage"] = {
        "id": {"S": "sam-env"}, "to": {"S": "someone@example.com"},
        "subject": {"S": "sam-env"}, "text": {"S": "Hi"},
    }  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c",
         "import json,sys; from dispatcher.handler import lambda_handler; "
         "from dispatcher.local.lambda_service.context import LocalContext; "
         "context = LocalContext(timeout_seconds=60); "
         "print(json.dumps(lambda_handler(json.load(sys.stdin), context)))"],
        input=json.dumps({"Records": [record]}), capture_output=True, text=True,
        env={"PATH": os.environ["PATH"], **here, "AWS_ACCESS_KEY_ID": "sam",
             "AWS_SECRET_ACCESS_KEY": "sam", "AWS_DEFAULT_REGION": stack.ready["region"]},
        timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1]) == {"batchItemFailures": []}
    assert any(m["payload"]["subject"] == "sam-env" for m in stack.mails("sam-env"))
