"""Scheduled Lambda entry point: ``dispatcher.sweeper.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the work is :mod:`dispatcher.sweep`'s.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from dispatcher.clock import SYSTEM_CLOCK, Deadline
from dispatcher.observability import logger, metrics
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.sweep import Sweeper

#: Stop starting updates this close to the function's timeout.
TIME_RESERVE_SECONDS = 2.0

_settings = Settings.from_env()
sweeper = Sweeper(
    Store(send_table=_settings.send_table_name, history_table=_settings.history_table_name)
)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = Deadline.from_context(context, SYSTEM_CLOCK, reserve=TIME_RESERVE_SECONDS)
    result = sweeper.sweep(deadline)
    metrics.add_metric(name="SweptRefired", unit=MetricUnit.Count, value=len(result.fired))
    metrics.add_metric(name="SweptMoved", unit=MetricUnit.Count, value=len(result.moved))
    logger.info(
        "sweep done",
        extra={
            "fired": len(result.fired),
            "moved": len(result.moved),
            "truncated": result.truncated,
        },
    )
    return asdict(result)
