"""The CLI against the running local stack, run as a user runs it: subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import DISPATCHER, RunningStack, wait_for


def _one_clean_error_line(result: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("dispatcher:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_send_then_show_history_ls_and_sandbox(stack: RunningStack) -> None:
    sent = stack.cli(
        "send",
        "--id",
        "cli-send",
        "--to",
        "cli@example.com",
        "--subject",
        "cli-send",
        "--text",
        "Hello __name__",
        "--insert-code",
        "name=CLI",
    )
    assert sent.returncode == 0, sent.stderr
    assert "inserted cli-send" in sent.stdout

    wait_for(lambda: stack.history("cli-send"), what="the send")
    show = stack.cli("show", "cli-send", "--json")
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["row"] is None
    assert shown["history"][0]["to"] == "cli@example.com"

    history = stack.cli("history", "--id", "cli-send", "--json")
    assert json.loads(history.stdout)["history"][0]["subject"] == "cli-send"
    mails = json.loads(stack.cli("sandbox", "--json").stdout)["mails"]
    assert any(
        m["payload"]["subject"] == "cli-send"
        and m["payload"]["insert_code"] == [{"key": "__name__", "value": "CLI"}]
        for m in mails
    )
    listing = stack.cli("ls", "--json")
    assert listing.returncode == 0
    assert all(r["id"] != "cli-send" for r in json.loads(listing.stdout)["rows"])


def test_send_many_rows_from_a_jsonl_file(stack: RunningStack, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": f"cli-bulk-{i}",
                    "to": "b@example.com",
                    "subject": f"cli-bulk-{i}",
                    "text": "x",
                }
            )
            for i in range(5)
        )
    )
    result = stack.cli("send", "--jsonl", str(rows), "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["inserted"]) == 5
    wait_for(lambda: len(stack.mails("cli-bulk-")) == 5, what="5 mails")


def test_ls_shows_a_failed_row_with_its_reason_and_cancel_removes_it(
    stack: RunningStack,
) -> None:
    stack.put({"id": "cli-bad", "to": "x@", "subject": "cli-bad", "text": "x"})
    wait_for(lambda: (r := stack.row("cli-bad")) and "status" in r, what="the stamp")

    listing = stack.cli("ls", "--status", "failed", "--json")
    [row] = [r for r in json.loads(listing.stdout)["rows"] if r["id"] == "cli-bad"]
    assert row["error_kind"] == "invalid"
    assert "to:" in row["last_error"]

    assert stack.cli("cancel", "cli-bad").returncode == 0
    assert stack.row("cli-bad") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-row"], "no row and no history"),
        (["cancel", "no-such-row"], "no row with id"),
        (["ls", "--status", "bogus"], "--status must be"),
        (["retry"], "give row ids or --all-failed"),
        (["history", "--since", "yesterday"], "--since wants a duration such as 2h"),
        (["send", "--to", "nobody", "--subject", "s"], "would fail: to:"),
        (["send", "--file", "/no/such/file.json"], "not found"),
        (["retry", "--all-failed", "--kind", "bogus"], "--kind must be one of invalid"),
        (["retry", "no-such-row"], "no row with id 'no-such-row'"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(
    stack: RunningStack, args: list[str], message: str
) -> None:
    line = _one_clean_error_line(stack.cli(*args))
    assert message in line


def test_retry_all_failed_of_a_kind_no_row_has_is_an_empty_result(stack: RunningStack) -> None:
    # A hostile probe met botocore's "Invalid length for parameter RequestItems" here.
    run = stack.cli("retry", "--all-failed", "--kind", "config", "--json")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"results": []}
    for status in ("failed", "deferred"):
        listed = stack.cli("ls", "--status", status, "--json")
        assert listed.returncode == 0, listed.stderr


def test_cancelling_a_row_whose_send_is_in_flight_is_refused_or_told(
    stack: RunningStack,
) -> None:
    # GIVEN a row the dispatcher is sending right now (the sandbox takes 7 s to answer, under
    # the 10 s request timeout: long enough for two CLI runs on a loaded 2-core machine,
    # where 3 s once let the send finish between them)
    stack.faults(latency=7.0)
    try:
        stack.put({"id": "in-flight", "to": "f@example.com", "subject": "in-flight", "text": "x"})
        wait_for(lambda: _sending(stack), what="the send to start")

        # WHEN someone cancels it: refused, the row named as pending
        refused = stack.cli("cancel", "in-flight")
        assert "is pending: the dispatcher may be sending it" in _one_clean_error_line(refused)

        # and with --force: deleted, and the command does not claim the mail is stopped
        forced = stack.cli("cancel", "--force", "in-flight")
        assert forced.returncode in (0, 2), forced.stderr
        assert "cancelled in-flight" not in forced.stdout
        told = forced.stdout + forced.stderr
        assert "may still go out" in told or "already being sent" in told
    finally:
        stack.faults(latency=0.0)
    # THEN the mail did go out, as the command said it might
    wait_for(lambda: stack.history("in-flight"), what="the history item")


def _sending(stack: RunningStack) -> bool:
    """An idempotency record in progress: the provider has the request, no answer yet."""
    items = stack.client.scan(TableName=stack.ready["idempotency_table"])["Items"]
    return any(i.get("status", {}).get("S") == "INPROGRESS" for i in items)


def test_a_row_with_an_empty_map_key_is_refused_and_the_stack_goes_on(
    stack: RunningStack,
) -> None:
    # GIVEN the reported poison row: DynamoDB refuses it, and so does the local endpoint
    import botocore.exceptions

    poison = {
        "id": {"S": "poison-2"},
        "to": {"S": "a@example.com"},
        "subject": {"S": "p"},
        "text": {"S": "x"},
        "insert_code": {"M": {"": {"S": "x"}}},
    }
    with pytest.raises(botocore.exceptions.ClientError, match="Empty attribute name"):
        stack.client.put_item(TableName=stack.ready["send_table"], Item=poison)

    # THEN nothing of it is stored, the CLI answers cleanly, and the next row is sent
    assert "no row and no history" in _one_clean_error_line(stack.cli("show", "poison-2"))
    stack.put({"id": "after-poison", "to": "a@example.com", "subject": "after", "text": "x"})
    wait_for(lambda: stack.history("after-poison"), what="the next row")


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISPATCHER_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [*DISPATCHER, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_no_running_stack_is_one_clear_line(tmp_path: Path) -> None:
    line = _one_clean_error_line(_cli(tmp_path, "ls"))
    assert "no local stack is running" in line


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "local.json").write_text(
        json.dumps(
            {
                "endpoint_url": "http://127.0.0.1:9",
                "region": "us-east-1",
                "send_table": "s",
                "history_table": "h",
                "sandbox_url": None,
            }
        )
    )
    line = _one_clean_error_line(_cli(tmp_path, "ls"))
    assert "DynamoDB unreachable" in line


def test_send_attach_uploads_the_file_and_the_sandbox_receives_it(
    stack: RunningStack, tmp_path: Path
) -> None:
    # GIVEN a local file
    invoice = tmp_path / "invoice-7.pdf"
    invoice.write_bytes(b"%PDF-1.7 " + b"x" * 2000)

    sent = stack.cli(
        "send", "--id", "cli-attach", "--to", "att@example.com", "--subject", "cli-attach",
        "--text", "Your invoice", "--attach", str(invoice),
    )  # fmt: skip

    # THEN the mail arrives with it, as blastengine's multipart shape
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: stack.history("cli-attach"), what="the send")
    [mail] = [m for m in json.loads(stack.cli("sandbox", "--json").stdout)["mails"]
              if m["payload"]["subject"] == "cli-attach"]  # fmt: skip
    assert mail["attachments"] == [
        {"filename": "invoice-7.pdf", "size": 2009, "content_type": "application/pdf"}
    ]
    assert stack.ready["attachments_bucket"] == "mail-dispatcher-attachments"


def test_attach_of_a_missing_file_is_one_clean_line(stack: RunningStack) -> None:
    line = _one_clean_error_line(
        stack.cli(
            "send",
            "--to",
            "a@example.com",
            "--subject",
            "s",
            "--text",
            "t",
            "--attach",
            "/no/such/file.pdf",
        )
    )
    assert "no such file" in line


def test_show_and_history_live_ask_the_provider_how_the_delivery_stands(
    stack: RunningStack,
) -> None:
    stack.put({"id": "cli-live", "to": "l@example.com", "subject": "cli-live", "text": "x",
               "cc": ["m@example.com"]})  # fmt: skip
    [item] = wait_for(lambda: stack.history("cli-live"), what="the send")
    delivery_id = item["delivery_id"]["S"]

    show = stack.cli("show", "cli-live", "--live")
    history = stack.cli("history", "--id", "cli-live", "--live", "--json")

    assert show.returncode == 0, show.stderr
    assert "blastengine now: SENT (2 sent, 0 hard error, 0 soft error, 0 dropped)" in show.stdout
    detail = json.loads(history.stdout)["deliveries"][delivery_id]
    assert (detail["status"], detail["total_count"]) == ("SENT", 2)
    assert "--live goes with --id" in _one_clean_error_line(stack.cli("history", "--live"))


def test_suppressed_add_list_remove_and_a_row_to_it_fails(stack: RunningStack) -> None:
    added = stack.cli("suppressed", "add", "Blocked@Example.com", "--note", "asked to stop")
    assert added.returncode == 0, added.stderr
    listed = json.loads(stack.cli("suppressed", "--json").stdout)["suppressed"]
    assert [(e["address"], e["reason"]) for e in listed] == [("blocked@example.com", "OPERATOR")]

    stack.put({"id": "cli-supp", "to": "blocked@example.com", "subject": "s", "text": "x"})
    wait_for(lambda: (stack.row("cli-supp") or {}).get("error_kind"), what="the stamp")
    row = stack.row("cli-supp")
    assert row is not None
    assert row["error_kind"] == {"S": "suppressed"}
    assert "asked to stop" in row["last_error"]["S"]

    assert stack.cli("suppressed", "remove", "blocked@example.com").returncode == 0
    line = _one_clean_error_line(stack.cli("suppressed", "remove", "blocked@example.com"))
    assert "is not suppressed" in line
    assert "is not an email address" in _one_clean_error_line(
        stack.cli("suppressed", "add", "nope")
    )


def test_suppressed_by_category_export_and_import(stack: RunningStack, tmp_path: Path) -> None:
    # GIVEN an address suppressed for the newsletter only, by an operator
    added = stack.cli("suppressed", "add", "kai@example.com", "--category", "newsletter",
                      "--reason", "asked by phone")  # fmt: skip
    assert added.stdout.strip() == "suppressed kai@example.com for newsletter mail"
    # WHEN a list from another provider is imported, with a bad line among its lines
    bad = tmp_path / "bad.csv"
    bad.write_text("address,scope\nok@example.com,all\nnot-an-address,all\n")
    line = _one_clean_error_line(stack.cli("suppressed", "import", str(bad)))
    assert "line 3:" in line
    assert "not imported" in line
    good = tmp_path / "list.txt"
    good.write_text("one@example.com\nTWO@example.com\n")
    assert stack.cli("suppressed", "import", str(good)).stdout.strip() == "imported 2 entries"
    # THEN the list holds each with its scope, filtered by category, and exports as CSV
    news = json.loads(stack.cli("suppressed", "--category", "newsletter", "--json").stdout)
    assert [(e["address"], e["scope"]) for e in news["suppressed"]] == [
        ("kai@example.com", "newsletter")
    ]
    exported = stack.cli("suppressed", "export").stdout.splitlines()
    assert exported[0] == "address,scope,reason,added_at,added_by,message"
    assert any(r.startswith("two@example.com,all,OPERATOR,") for r in exported)
    assert "ok@example.com" not in "\n".join(exported)  # the bad file wrote nothing
    # AND the category entry is lifted for that category
    assert (
        stack.cli("suppressed", "remove", "kai@example.com", "--category", "newsletter").returncode
        == 0
    )
    assert "--category:" in _one_clean_error_line(
        stack.cli("suppressed", "add", "x@example.com", "--category", "Bad Name")
    )


def test_console_serves_the_stack_until_stopped(stack: RunningStack) -> None:
    import httpx

    from tests.e2e.conftest import stop_stack

    env = {**os.environ, "DISPATCHER_STATE_DIR": str(stack.state_dir)}
    process = subprocess.Popen(
        [*DISPATCHER, "console"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        base, token = url.split("?token=")
        overview = httpx.get(f"{base}api/overview", headers={"Authorization": f"Bearer {token}"})
        assert overview.status_code == 200
        assert "failed_by_kind" in overview.json()["counts"]
        assert httpx.get(f"{base}api/overview").status_code == 401
    finally:
        stop_stack(process)  # type: ignore[arg-type]
    assert process.returncode == 0


def test_console_with_a_bad_host_is_one_clear_line(stack: RunningStack) -> None:
    # an address other machines reach is refused without --allow-remote, saying why
    line = _one_clean_error_line(stack.cli("console", "--host", "203.0.113.77"))
    assert "plain HTTP" in line
    assert "--allow-remote" in line
    # with it, an address this machine does not have is one clear line too
    line = _one_clean_error_line(stack.cli("console", "--host", "203.0.113.77", "--allow-remote"))
    assert "cannot serve the console on 203.0.113.77" in line


def test_env_tells_where_the_stack_is_and_its_shell_form_runs_the_function(
    stack: RunningStack,
) -> None:
    # GIVEN the running stack: `dispatcher env` names its parts for a person
    human = stack.cli("env")
    assert human.returncode == 0, human.stderr
    assert f"DynamoDB endpoint:            {stack.ready['endpoint_url']}" in human.stdout
    assert "sandbox:" in human.stdout
    # and as JSON, the state file's facts with the sandbox's root
    document = json.loads(stack.cli("env", "--json").stdout)
    assert document["endpoint_url"] == stack.ready["endpoint_url"]
    assert not document["dispatcher_sandbox_url"].endswith("/api/v1")
    # the console, which comes up after the state file was first written, is in it too
    assert stack.ready["console_url"]
    assert document["dispatcher_console_url"] == stack.ready["console_url"]
    # WHEN a shell evaluates --shell and runs the function and the sandbox's controls with it
    script = (
        f'eval "$({" ".join(DISPATCHER)} env --shell)" && '
        f"{' '.join(DISPATCHER)} invoke --seed events/insert.json && "
        'python -c "import os, urllib.request; '
        "print(urllib.request.urlopen(os.environ['DISPATCHER_SANDBOX_URL'] "
        "+ '/sandbox/stats').status)\""
    )
    env = {**os.environ, "DISPATCHER_STATE_DIR": str(stack.state_dir)}
    bash = shutil.which("bash") or "/bin/bash"
    root = Path(__file__).resolve().parents[2]  # events/ is the repository's
    ran = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, env=env, timeout=60, cwd=root
    )
    # THEN the function ran against this stack (a partial batch response) and the sandbox
    # answered at the address it was given
    assert ran.returncode == 0, ran.stderr
    assert '"batchItemFailures": []' in ran.stdout
    assert ran.stdout.strip().endswith("200")


def test_env_with_two_ways_of_printing_is_one_clear_line(stack: RunningStack) -> None:
    line = _one_clean_error_line(stack.cli("env", "--json", "--shell"))
    assert "choose one" in line


def test_env_without_a_stack_is_one_clear_line(tmp_path: Path) -> None:
    line = _one_clean_error_line(_cli(tmp_path, "env", "--shell"))
    assert "no local stack is running" in line


def test_history_to_finds_every_mail_to_one_address_with_its_status(
    stack: RunningStack,
) -> None:
    # GIVEN two mails sent to one address (in any case) and one to another
    for row_id, to in (("hist-to-1", "Kiyo@Example.com"), ("hist-to-2", "kiyo@example.com"),
                       ("hist-to-3", "other@example.com")):  # fmt: skip
        stack.put({"id": row_id, "to": to, "subject": row_id, "text": "hi"})
    wait_for(lambda: len(stack.history("hist-to-2")) == 1, what="the second mail sent")
    wait_for(lambda: len(stack.history("hist-to-1")) == 1, what="the first mail sent")

    # WHEN the history is asked for every mail to the address
    found = json.loads(
        stack.cli("history", "--to", "KIYO@example.com", "--since", "1h", "--json").stdout
    )

    # THEN both mails to it are there, newest first, each with its delivery status
    ids = [item["id"] for item in found["history"]]
    assert sorted(ids) == ["hist-to-1", "hist-to-2"]
    assert {item["delivery_status"] for item in found["history"]} <= {"accepted", "delivered"}
    sent = [item["sent_at"] for item in found["history"]]
    assert sent == sorted(sent, reverse=True)


def test_history_to_with_a_bad_address_is_one_clear_line(stack: RunningStack) -> None:
    line = _one_clean_error_line(stack.cli("history", "--to", "not-an-address"))
    assert "--to: 'not-an-address' is not an email address" in line
    line = _one_clean_error_line(
        stack.cli("history", "--to", "a@example.com", "--since", "yesterday")
    )
    assert "--since wants a duration" in line


def test_erase_leaves_no_address_behind_but_the_suppression(stack: RunningStack) -> None:
    # GIVEN mail sent to Ren, a row to her still waiting (scheduled), and her address suppressed
    stack.put({"id": "erase-1", "to": "Ren@example.com", "subject": "Hello Ren", "text": "x"})
    wait_for(lambda: stack.history("erase-1"), what="the mail to Ren sent")
    later = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    stack.put({"id": "erase-2", "to": "ren@example.com", "subject": "Later", "text": "x",
               "send_after": later})  # fmt: skip
    # (once stamped: a row the dispatcher re-stamps while erase reads it is left, and said so)
    wait_for(lambda: (stack.row("erase-2") or {}).get("status") == {"S": "scheduled"},
             what="the later row stamped scheduled")  # fmt: skip
    assert stack.cli("suppressed", "add", "ren@example.com").returncode == 0

    # WHEN she asks to be erased
    done = stack.cli("erase", "--to", "ren@example.com", "--yes", "--json")

    # THEN the command says what it removed
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["history_items"]) == 1
    assert report["bodies"] == 1  # the mail as sent, gone too
    assert report["suppressed"] is True
    # and no address is left: not in the history (by index or by item), not in the send table
    found = json.loads(stack.cli("history", "--to", "ren@example.com", "--json").stdout)
    assert found["history"] == []
    [item] = stack.history("erase-1")
    assert item["to"] == {"S": "(erased)"}
    assert "ren@example.com" not in json.dumps(item).lower()
    assert report["rows_deleted"] == ["erase-2"]
    assert stack.row("erase-2") is None
    # the suppression entry stays, so the address is not mailed again
    listed = json.loads(stack.cli("suppressed", "--json").stdout)
    assert any(e["address"] == "ren@example.com" for e in listed["suppressed"])


def test_erase_without_yes_in_a_script_is_one_clear_line(stack: RunningStack) -> None:
    line = _one_clean_error_line(stack.cli("erase", "--to", "a@example.com"))
    assert "--yes" in line


def test_resend_sends_a_copy_of_the_mail_as_sent_once(stack: RunningStack) -> None:
    # GIVEN a mail sent with a variable filled in
    stack.put({"id": "resend-1", "to": "mio@example.com", "subject": "Hi __n__",
               "text": "Dear __n__", "insert_code": {"n": "Mio"}})  # fmt: skip
    wait_for(lambda: stack.history("resend-1"), what="the first mail sent")

    # WHEN it is sent again
    done = stack.cli("resend", "resend-1", "--json")

    # THEN a new row copies the mail as sent, and is sent once, naming where it came from
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    new_id = report["inserted"]
    assert new_id.startswith("resend-1~resent-")
    [copy] = wait_for(lambda: stack.history(new_id), what="the copy sent")
    assert copy["resent_from"]["S"].startswith("resend-1 @ ")
    mails = [m for m in stack.mails("Hi Mio") if m["payload"]["to"] == "mio@example.com"]
    assert len(mails) == 1  # the copy: the first went out with __n__ for blastengine to fill
    assert mails[0]["payload"]["text_part"] == "Dear Mio"
    # and asking for a send that never happened is one clear line
    line = _one_clean_error_line(stack.cli("resend", "no-such-mail"))
    assert "no mail was sent under id" in line
