"""The Powertools Logger, Metrics and Tracer shared by the dispatcher and the sweeper.

Names come from the standard Powertools variables (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``), with defaults so that local runs
and tests need none of them.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

__all__ = ["logger", "metrics", "tracer"]

_SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "mail-dispatcher")

logger = Logger(service=_SERVICE)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MailDispatcher"), service=_SERVICE
)
tracer = Tracer(service=_SERVICE)
