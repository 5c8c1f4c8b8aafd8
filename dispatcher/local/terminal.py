"""Logs for a person at a terminal: one short line per event, quiet when nothing happens.

The functions log JSON lines (Powertools), which is right for Lambda, files and pipes, and a
wall of text between ``make run``'s tables. When ``dispatcher dev``'s stderr is a terminal
(or ``--log-format human``), the same records are printed as ``time  row  outcome  reason``,
coloured where the terminal has colour, and the records that say nothing happened (an idle
sweep, the dispatcher's own echo skipped) are left out. Only the rendering changes: every
key the JSON would carry is still appended to the record.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

__all__ = ["HumanFormatter", "QuietFilter", "use_human_logs"]

_COLOURS = {
    "sent": "32",  # green
    "duplicate": "32",
    "failed": "31",  # red
    "deferred": "33",  # yellow
    "scheduled": "36",  # cyan
    "stale": "90",  # grey
}
_LEVEL_COLOURS = {"WARNING": "33", "ERROR": "31", "CRITICAL": "31"}


class HumanFormatter(LambdaPowertoolsFormatter):
    """Renders a Powertools log record as one readable line."""

    def __init__(self, *, colour: bool) -> None:
        super().__init__()
        self._colour = colour

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        when = str(log.get("timestamp", ""))[11:19]
        row = str(log.get("row_id") or "-")
        outcome = str(log.get("outcome") or log.get("level", "")).lower()
        message = str(log.get("message", ""))
        extras = {
            k: v
            for k, v in log.items()
            if k in ("error", "reason", "fired", "moved", "events", "joined", "shard_id")
            and v not in (None, 0, False)
        }
        tail = "  " + json.dumps(extras, default=str) if extras else ""
        colour = _COLOURS.get(outcome) or _LEVEL_COLOURS.get(str(log.get("level")))
        label = f"{outcome:<9}"
        if self._colour and colour:
            label = f"\033[{colour}m{label}\033[0m"
        line = f"{when}  {row:<18} {label} {message}{tail}"
        if log.get("exception"):
            line += "\n" + str(log["exception"])
        return line


class QuietFilter(logging.Filter):
    """Leaves out the records that say nothing happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == "sweep done":
            return bool(getattr(record, "fired", 0) or getattr(record, "moved", 0))
        if message == "skipped":
            return getattr(record, "outcome", "") not in ("echo", "skipped")
        return True


def use_human_logs(logger: Any, *, colour: bool) -> None:
    """Switch a Powertools logger's handler to the human rendering (keys kept)."""
    handler = logger.registered_handler
    keys = logger.registered_formatter.log_format
    formatter = HumanFormatter(colour=colour)
    formatter.log_format = dict(keys)
    handler.setFormatter(formatter)
    handler.addFilter(QuietFilter())
