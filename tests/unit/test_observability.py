"""Tracing follows Powertools' own rule for when to trace."""

from __future__ import annotations

import pytest

from dispatcher.support.observability import tracing_enabled

LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (LAMBDA, True),
        ({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({**LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({**LAMBDA, "AWS_SAM_LOCAL": "true"}, False),
        ({}, False),
    ],
)
def test_tracing_follows_powertools_rule(environ: dict[str, str], expected: bool) -> None:
    assert tracing_enabled(environ) is expected
