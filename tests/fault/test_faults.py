"""The fault suite: the real local stack under injected faults loses nothing and sends nothing
twice. Every test checks, from the sandbox's log and both tables, that each row ends either in
history exactly once with exactly one accepted mail, or in the send table marked failed with a
readable reason. A send whose answer never came (a hang past the timeout, a death mid-send) is
settled by asking the sandbox's look-ups, so not even those rows may be sent twice.

Seeded and bounded in time. FAULT_ROWS sets the size of the big run (250 by default, enough
for every fault to be met a dozen times; `make soak` repeats it at 10,000).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import row
from tests.corpus import storable_malformed_rows
from tests.e2e.conftest import RunningStack, running_stack, wait_for

FAST = {
    "RATE_LIMIT_RPS": "300",
    "SEND_CONCURRENCY": "24",
    "REQUEST_TIMEOUT_SECONDS": "1",
    "DEFERRAL_BASE_SECONDS": "1",
}


def _row(row_id: str, **extra: Any) -> dict[str, Any]:
    return row(row_id, **{"to": "fault@example.com", "subject": row_id, "text": "x", **extra})


def _put_all(stack: RunningStack, rows: list[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(stack.put, rows))


def _settled(stack: RunningStack, row_id: str) -> bool:
    row = stack.row(row_id)
    if row is None:
        return True
    return row.get("status", {}).get("S") == "failed"


def _check_every_row(stack: RunningStack, ids: list[str], prefix: str) -> Counter[str]:
    """The suite's invariant; returns how many rows ended which way ("confirmed": sent, and
    known to be only by the look-up after its answer never came)."""
    mails = Counter(m["payload"]["subject"] for m in stack.mails(prefix))
    ends: Counter[str] = Counter()
    for row_id in ids:
        row = stack.row(row_id)
        history = stack.history(row_id)
        if row is None:
            assert len(history) == 1, f"{row_id}: {len(history)} history items"
            assert mails[row_id] == 1, f"{row_id}: {mails[row_id]} mails"
            ends["sent"] += 1
            if history[0].get("confirmed_by", {}).get("S") == "lookup":
                ends["confirmed"] += 1
        else:
            assert row["status"]["S"] == "failed", f"{row_id} left {row.get('status')}"
            assert row["last_error"]["S"], f"{row_id} failed without a reason"
            assert history == [], f"{row_id} failed yet has history"
            ends["failed"] += 1
    assert set(mails) <= set(ids), "mail for a row that was never inserted"
    return ends


def _log_records(stack: RunningStack) -> list[dict[str, Any]]:
    out = []
    for line in stack.log.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_thousands_of_rows_under_30_percent_provider_faults(tmp_path: Path) -> None:
    # GIVEN a sandbox answering 10% 429, 10% 500, and 10% hanging past the request timeout:
    # half of those having taken the mail, half not (each settled by look-up, as the
    # sandbox's look-ups lag a second behind)
    rows = int(os.environ.get("FAULT_ROWS", "250"))
    with running_stack(tmp_path, "--seed", "11", "--no-persist", env=FAST) as stack:
        stack.faults(
            rate_limited=0.10,
            retry_after=0.05,
            server_error=0.10,
            timeout=0.05,
            accepted_timeout=0.05,
            hang_seconds=1.5,
            seed=11,
        )
        ids = [f"load-{i:05}" for i in range(rows)]

        # WHEN the rows are inserted concurrently, to fifty recipients (a look-up compares
        # every delivery to the address around the window: README, "When the provider's
        # answer never came", says what one address receiving hundreds a second costs)
        _put_all(stack, [_row(i, to=f"fault{n % 50}@example.com") for n, i in enumerate(ids)])

        # THEN every row settles, each sent exactly once or failed with its reason
        wait_for(
            lambda: all(_settled(stack, i) for i in ids),
            timeout=60 + rows / 10,
            what=f"{rows} rows to settle",
        )
        ends = _check_every_row(stack, ids, "load-")
        assert ends["sent"] >= rows * 0.99
        # and the mail taken without an answer was found by look-up, not sent again
        assert ends["confirmed"] >= 1, ends
        # and the dispatcher's own writes never caused a send
        records = _log_records(stack)
        echoes = [r for r in records if r.get("outcome") == "echo"]
        sends = [r for r in records if r.get("outcome") in ("sent", "confirmed")]
        assert echoes, "deferrals and failures stamp rows: their echoes must have been seen"
        assert all(r.get("trigger") != "dispatcher's own bookkeeping write" for r in sends)
        assert len(sends) == ends["sent"]


# Four shards only: every other test of the suite runs one, and the faults are the same.
@pytest.mark.parametrize("shards", [4])
def test_dynamodb_throttling_and_transaction_conflicts_lose_nothing(
    tmp_path: Path, shards: int
) -> None:
    # GIVEN 3% of the function's DynamoDB calls (the shared limit's too) throttled or
    # conflicting, on four shards sharing the account's limit
    with running_stack(
        tmp_path,
        "--dynamodb-fault-rate",
        "0.03",
        "--seed",
        "5",
        "--no-persist",
        "--shards",
        str(shards),
        env=FAST,
    ) as stack:
        ids = [f"throttle-{i:04}" for i in range(300)]
        _put_all(stack, [_row(i) for i in ids])

        # THEN every row is sent once, retried through partial batch failures; a row whose
        # retries ran out is still in the table and named in the on-failure record
        on_failure = stack.state_dir / "on-failure.jsonl"

        def done() -> bool:
            given_up = on_failure.read_text() if on_failure.exists() else ""
            return all(stack.row(i) is None or i in given_up for i in ids)

        wait_for(done, timeout=120, what="300 rows")
        given_up = on_failure.read_text() if on_failure.exists() else ""
        sent = [i for i in ids if i not in given_up]
        _check_every_row(stack, sent, "throttle-")
        for row_id in set(ids) - set(sent):
            assert stack.row(row_id) is not None, f"{row_id} lost"
        # and the faults did happen: records were left for retry and then went through
        assert "record left for retry" in stack.log.read_text()


def _run_under_kills(tmp_path: Path, concurrency: int) -> tuple[Counter[str], Counter[str]]:
    """180 rows (a third of them failing: 500s or invalid) through a function killed
    (SIGKILL) in half its invocations, at each kill point in turn. Checks the suite's
    invariant and returns how the rows ended and where the process died."""
    with running_stack(
        tmp_path,
        "--kill-rate",
        "0.5",
        "--seed",
        "7",
        "--no-persist",
        env={**FAST, "SEND_CONCURRENCY": str(concurrency), "MAX_ATTEMPTS": "4"},
    ) as stack:
        stack.faults(fail_to=["down@example.com"])
        ids = [f"kill-{i:03}" for i in range(180)]
        rows = []
        for n, row_id in enumerate(ids):
            if n % 6 == 1:
                rows.append(_row(row_id, to="down@example.com"))  # 500s: deferred, then failed
            elif n % 6 == 4:
                rows.append({"id": row_id, "to": "x@example.com", "text": "no subject"})
            else:
                rows.append(_row(row_id))
        _put_all(stack, rows)

        # a row whose record's retries ran out is named in the on-failure record and kept
        on_failure = stack.state_dir / "on-failure.jsonl"

        def given_up() -> str:
            return on_failure.read_text() if on_failure.exists() else ""

        def settled() -> bool:
            gone = given_up()
            return all(_settled(stack, i) or i in gone for i in ids)

        wait_for(settled, timeout=240, what="180 rows to settle under kills")
        kept = [i for i in ids if i not in given_up()]
        for row_id in set(ids) - set(kept):
            assert stack.row(row_id) is not None, f"{row_id} lost"
        records = _log_records(stack)
        interrupted = {
            r["row_id"] for r in records if "stopped mid-send" in str(r.get("message", ""))
        }
        ends = _check_every_row(stack, kept, "kill-")
        assert ends["sent"] >= 110
        assert interrupted, "a death while 'in progress' must have been met and recovered"
        kills = Counter(r["kill_point"] for r in records if r.get("message") == "injected kill")
        died = stack.log.read_text().count("Runtime exited with error: signal: killed")
        assert died >= sum(kills.values())
        return ends, kills


def test_the_function_killed_mid_batch_and_restarted_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    # GIVEN one send at a time
    # WHEN the process is killed at each point in turn: idempotency record in progress, mail
    # accepted, transaction committed, failure stamp written or not
    _, kills = _run_under_kills(tmp_path, concurrency=1)

    # THEN (checked inside) every row is sent exactly once or failed with its reason
    assert set(kills) == {"sending", "sent", "transaction", "stamping"}, kills


def test_sends_in_flight_when_the_process_dies_are_looked_up_not_sent_twice(
    tmp_path: Path,
) -> None:
    """With concurrent sends, a death also cuts off the sends in flight in other threads:
    the provider may have accepted them, and their idempotency records stay "in progress".
    Their rows wait for a look-up, which finds the mail the provider took: every row is still
    sent exactly once (checked inside)."""
    ends, kills = _run_under_kills(tmp_path, concurrency=8)

    assert sum(kills.values()) >= 4, kills
    assert ends["sent"] >= 110


def test_an_accepted_mail_answered_after_the_timeout_is_confirmed_not_resent(
    tmp_path: Path,
) -> None:
    """The provider took the mail, but its answer came after REQUEST_TIMEOUT_SECONDS. The
    dispatcher does not retry: once the sandbox's look-ups can show it, it asks, finds the
    mail and moves the row to history, confirmed by look-up."""
    with running_stack(tmp_path, "--no-persist", env=FAST) as stack:
        stack.faults(hang_once_to=["slow@example.com"], hang_seconds=1.5)
        stack.put(_row("slow-1", to="slow@example.com"))

        wait_for(lambda: stack.history("slow-1"), what="the look-up's confirmation")
        assert len(stack.mails("slow-1")) == 1
        [history] = stack.history("slow-1")
        assert history["confirmed_by"]["S"] == "lookup"
        assert history["delivery_id"]["S"] == str(stack.mails("slow-1")[0]["delivery_id"])
        assert stack.row("slow-1") is None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_stack(tmp_path_factory.mktemp("fault"), "--no-persist", env=FAST) as running:
        yield running


def test_malformed_rows_fail_invalid_naming_the_attribute_and_the_valid_ones_go(
    stack: RunningStack,
) -> None:
    from boto3.dynamodb.types import TypeDeserializer

    cases = storable_malformed_rows()
    valid = [f"fine-{i}" for i in range(10)]
    # Mixed, so that the valid rows share batches with the malformed ones.
    for n, (_, raw, _) in enumerate(cases):
        stack.client.put_item(TableName=stack.ready["send_table"], Item=raw)
        if n % 6 == 0 and valid[n // 6 :]:
            stack.put(_row(valid[n // 6], subject=valid[n // 6]))
    for row_id in valid[len(cases) // 6 + 1 :]:
        stack.put(_row(row_id, subject=row_id))

    wait_for(lambda: all(_settled(stack, name) for name, _, _ in cases), what="the stamps")
    wait_for(lambda: all(stack.row(v) is None for v in valid), what="the valid rows")
    for name, _, attribute in cases:
        row = stack.row(name)
        assert row is not None, name
        assert (row["status"]["S"], row["error_kind"]["S"]) == ("failed", "invalid"), name
        assert f"{attribute}:" in row["last_error"]["S"], name
    subjects = {m["payload"]["subject"] for m in stack.mails("")}
    assert set(valid) <= subjects
    case_subjects = {
        TypeDeserializer().deserialize(raw["subject"])
        for _, raw, _ in cases
        if "S" in raw.get("subject", {})
    }
    assert not (subjects & case_subjects - set(valid)), "a malformed row reached the API"
    assert "Traceback" not in stack.log.read_text()


def test_the_corpus_has_at_least_60_storable_cases() -> None:
    assert len(storable_malformed_rows()) >= 60
