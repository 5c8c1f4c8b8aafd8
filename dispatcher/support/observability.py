"""The Powertools Logger, Metrics and Tracer shared by the dispatcher and the sweeper.

Names come from the standard Powertools variables (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``), with defaults so that local runs
and tests need none of them.

The Tracer is built only where Powertools would trace (its X-Ray SDK is imported, patches
botocore and httpx, and builds its own botocore clients): with ``Tracing=PassThrough``,
locally and in tests, none of that happens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.shared.functions import strtobool

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

__all__ = ["logger", "metrics", "traced_handler", "tracer", "tracing_enabled"]

_SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "mail-dispatcher")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Powertools' own rule: off with ``POWERTOOLS_TRACE_DISABLED``, outside Lambda, and
    under ``sam local``."""
    if strtobool(environ.get("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    return bool(environ.get("LAMBDA_TASK_ROOT")) and not environ.get("AWS_SAM_LOCAL")


def _tracer() -> Tracer | None:
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=_SERVICE)


class _Metrics(Metrics):
    """Powertools' Metrics, silent when ``POWERTOOLS_METRICS_DISABLED``: Powertools skips
    the flush then, but still prints a metric's values once 100 pile up (a batch of 100
    mails), and keeps them for ever in a warm container."""

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        if not is_metrics_disabled():
            super().add_metric(*args, **kwargs)


logger = Logger(service=_SERVICE)
metrics = _Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MailDispatcher"), service=_SERVICE
)
tracer = _tracer()


def traced_handler(handler: Handler) -> Handler:
    """``tracer.capture_lambda_handler`` when tracing is on; the handler itself otherwise."""
    if tracer is None:
        return handler
    return cast("Handler", tracer.capture_lambda_handler(handler))
