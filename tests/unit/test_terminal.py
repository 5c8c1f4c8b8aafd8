"""dispatcher dev's human log lines: one short line per event, idle records left out."""

from __future__ import annotations

import io
import logging

from aws_lambda_powertools import Logger

from dispatcher.local.terminal import use_human_logs


def _logger() -> tuple[Logger, io.StringIO]:
    stream = io.StringIO()
    _logger.count = getattr(_logger, "count", 0) + 1  # type: ignore[attr-defined]
    name = f"terminal-test-{_logger.count}"  # type: ignore[attr-defined]
    logger = Logger(service=name, logger_handler=logging.StreamHandler(stream))
    use_human_logs(logger, colour=False)
    return logger, stream


def test_an_event_is_one_line_with_time_row_outcome_and_reason() -> None:
    logger, stream = _logger()

    logger.info("failed (invalid): to: missing", extra={"row_id": "order-7", "outcome": "failed"})

    [line] = stream.getvalue().splitlines()
    assert line[8:].split()[:3] == ["order-7", "failed", "failed"]
    assert line.endswith("to: missing")
    assert "{" not in line  # no JSON


def test_idle_sweeps_and_echoes_say_nothing_and_are_left_out() -> None:
    logger, stream = _logger()

    logger.info("sweep done", extra={"fired": 0, "moved": 0, "truncated": False})
    logger.info("skipped", extra={"outcome": "echo", "row_id": "r1"})
    logger.info("sweep done", extra={"fired": 3, "moved": 0})

    [line] = stream.getvalue().splitlines()
    assert '{"fired": 3}' in line


def test_colour_only_where_asked() -> None:
    stream = io.StringIO()
    logger = Logger(service="terminal-colour", logger_handler=logging.StreamHandler(stream))
    use_human_logs(logger, colour=True)

    logger.info("sent as delivery 9", extra={"row_id": "r", "outcome": "sent"})

    assert "\033[32m" in stream.getvalue()
