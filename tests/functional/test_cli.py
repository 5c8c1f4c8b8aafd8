"""`dispatcher invoke` (and every command's help), as a user runs them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.ops.cli import app
from tests.conftest import API_KEY, BASE_URL, EVENTS, LOGIN_ID, TABLE_NAMES

runner = CliRunner()


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch, dynamodb) -> Iterator[None]:
    for name, value in {
        "SEND_TABLE_NAME": TABLE_NAMES["SendTable"],
        "HISTORY_TABLE_NAME": TABLE_NAMES["HistoryTable"],
        "IDEMPOTENCY_TABLE_NAME": TABLE_NAMES["IdempotencyTable"],
        "DEFAULT_FROM_EMAIL": "noreply@example.com",
        "BLASTENGINE_BASE_URL": BASE_URL,
        "BLASTENGINE_LOGIN_ID": LOGIN_ID,
        "BLASTENGINE_API_KEY": API_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    _forget_handler()  # built at import: rebuild with this env
    yield
    _forget_handler()


def _forget_handler() -> None:
    sys.modules.pop("dispatcher.handler", None)
    sys.modules["dispatcher"].__dict__.pop("handler", None)


def test_invoke_runs_the_handler_and_prints_the_partial_batch_response(
    function_env, blastengine, table
) -> None:
    result = runner.invoke(app, ["invoke", str(EVENTS / "insert.json"), "--seed"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"batchItemFailures": []}
    assert [p["to"] for p in blastengine.payloads] == ["hanako@example.com"]
    assert table.get("welcome-0001") is None


def test_invoke_without_seed_skips_records_whose_rows_do_not_exist(
    function_env, blastengine
) -> None:
    result = runner.invoke(app, ["invoke", str(EVENTS / "insert.json")])

    assert result.exit_code == 0, result.output
    assert blastengine.route.call_count == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "event file not found"),
        ("{not json", "is not JSON"),
        ('{"records": []}', "no 'Records' list"),
    ],
)
def test_invoke_rejects_a_bad_event_file_in_one_line(
    function_env, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)

    result = runner.invoke(app, ["invoke", str(path)])

    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_invoke_names_a_missing_setting(monkeypatch: pytest.MonkeyPatch, dynamodb) -> None:
    monkeypatch.delenv("SEND_TABLE_NAME", raising=False)
    _forget_handler()

    result = runner.invoke(app, ["invoke", str(EVENTS / "insert.json")])

    assert result.exit_code == 2
    assert "SEND_TABLE_NAME" in result.stderr
    assert "Traceback" not in result.output


def test_dev_refuses_a_window_shape_it_does_not_model(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["--state-dir", str(tmp_path), "dev", "--sandbox-window", "sliding"]
    )

    assert result.exit_code == 2
    assert "--sandbox-window must be fixed or bucket, not 'sliding'" in result.stderr
    assert not (tmp_path / "local.json").exists()  # nothing was started


def test_every_command_has_help() -> None:
    for args in ([], ["invoke"], ["demo"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output
