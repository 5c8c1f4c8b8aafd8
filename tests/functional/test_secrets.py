"""The API key never appears in a log line, an exception text or a stored attribute."""

from __future__ import annotations

import logging

import httpx
import pytest

from dispatcher.providers.blastengine.client import bearer_token
from dispatcher.support.observability import logger
from tests.conftest import API_KEY, LOGIN_ID, row


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture):
    previous = logger.log_level
    logger.setLevel("DEBUG")
    caplog.set_level(logging.DEBUG)
    yield caplog
    logger.setLevel(previous)


def test_logs_and_rows_never_contain_the_api_key(
    dispatcher, table, stream_record, blastengine, invoke, debug_logging, capsys
) -> None:
    # GIVEN rows that succeed, fail auth, fail transiently and are invalid
    blastengine.script.extend(
        [
            httpx.Response(401, json={"error_messages": {"Authorization": ["bad token"]}}),
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(500),
        ]
    )
    records = [stream_record("INSERT", raw_new=table.put(row(f"r{i}"))) for i in range(3)]
    records.append(stream_record("INSERT", raw_new=table.put(row("bad", to="nope"))))
    records.append(stream_record("INSERT", raw_new=table.put(row("ok"))))
    dispatcher.settings.__repr__()  # repr is logged by some tools; it must be safe too

    # WHEN they are processed with every logger at DEBUG
    for record in records:
        invoke(dispatcher, record)

    # THEN neither the key nor the token derived from it appears anywhere
    captured = capsys.readouterr()
    text = "\n".join(
        [
            captured.out,
            captured.err,
            debug_logging.text,
            repr(table.rows()),
            repr(dispatcher.settings),
        ]
    )
    assert "r0" in text  # the logs did capture the run
    for secret in (API_KEY, bearer_token(LOGIN_ID, API_KEY)):
        assert secret not in text
