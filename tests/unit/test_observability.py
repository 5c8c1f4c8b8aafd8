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


@pytest.mark.parametrize(("disabled", "printed"), [("true", False), ("false", True)])
def test_disabled_metrics_stay_silent_past_a_hundred_values(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    disabled: str,
    printed: bool,
) -> None:
    # Powertools prints a metric's values once 100 pile up, disabled or not; ours, not when off
    from aws_lambda_powertools.metrics import MetricUnit

    from dispatcher.support.observability import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", disabled)
    try:
        for _ in range(120):
            metrics.add_metric(name="Sent", unit=MetricUnit.Count, value=1)
        assert ('"Sent"' in capsys.readouterr().out) is printed
    finally:
        metrics.clear_metrics()
