"""The Lambda functions, composed from their parts.

The entry modules (:mod:`dispatcher.handler`, :mod:`dispatcher.sweeper`) build their parts
from the environment at import, as Lambda expects; the local stack, the CLI's ``invoke`` and
the tests build theirs from a :class:`~dispatcher.config.settings.Settings` they hold, with
their own clients. Both get the same function from here, with the same Powertools decorators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from dispatcher.support.clock import SYSTEM_CLOCK, Deadline
from dispatcher.support.observability import logger, metrics, traced_handler

if TYPE_CHECKING:
    from dispatcher.bounces.catch_up import Reconciler
    from dispatcher.bounces.ses_events import SesEvents
    from dispatcher.flow.dispatch import Dispatcher
    from dispatcher.flow.sweep import Sweeper
    from dispatcher.tracking.mail_log import MailLogPoller

__all__ = [
    "SWEEP_TIME_RESERVE_SECONDS",
    "LambdaFunction",
    "dispatch_function",
    "ses_events_function",
    "sweep_function",
    "url_function",
    "webhook_function",
]

#: The sweeper stops starting updates this close to the function's timeout.
SWEEP_TIME_RESERVE_SECONDS = 2.0
#: How far back each scheduled catch-up reads the delivery logs: twice its hourly schedule,
#: so one failed run loses nothing.
RECONCILE_WINDOW = timedelta(hours=2)

LambdaFunction = Callable[[dict[str, Any], Any], Any]


def dispatch_function(dispatcher: Dispatcher, *, publish_metrics: bool = True) -> LambdaFunction:
    """The stream-triggered function: one batch in, Lambda's partial batch response out.

    ``publish_metrics=False``, or Powertools' ``POWERTOOLS_METRICS_DISABLED`` (the local
    stack's default), drops each invocation's metrics instead of printing them as CloudWatch
    EMF lines, which only Lambda's log pipeline reads.
    """

    def handle(event: dict[str, Any], context: Any) -> Any:
        return dispatcher.handle_batch(event, context)

    return _decorated(handle, publish_metrics, traced=True, cold_start_metric=True)


def sweep_function(
    sweeper: Sweeper,
    *,
    reconciler: Reconciler | None = None,
    mail_log: MailLogPoller | None = None,
    publish_metrics: bool = True,
) -> LambdaFunction:
    """The scheduled function: re-fires the rows whose wait is over; on its slower schedule
    (``{"task": "reconcile"}``) it catches bounces up from the delivery logs instead."""

    def sweep(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if isinstance(event, dict) and event.get("task") == "reconcile":
            if reconciler is None:
                return {"reconciled": False, "reason": "no bounce table configured"}
            now = SYSTEM_CLOCK.now()
            caught = reconciler.catch_up(now - RECONCILE_WINDOW, now)
            metrics.add_metric(name="BouncesCaughtUp", unit=MetricUnit.Count, value=caught.applied)
            logger.info("bounces caught up", extra=asdict(caught))
            return asdict(caught)
        deadline = Deadline.from_context(context, SYSTEM_CLOCK, reserve=SWEEP_TIME_RESERVE_SECONDS)
        result = sweeper.sweep(deadline)
        metrics.add_metric(name="SweptRefired", unit=MetricUnit.Count, value=len(result.fired))
        metrics.add_metric(name="SweptMoved", unit=MetricUnit.Count, value=len(result.moved))
        joined = reconciler.join_orphans() if reconciler is not None else 0
        # blastengine's mail log: how recent mail fared (within a small share of the limit)
        statuses = mail_log.poll(deadline).moved if mail_log is not None else 0
        logger.info(
            "sweep done",
            extra={
                "fired": len(result.fired),
                "moved": len(result.moved),
                "truncated": result.truncated,
                "orphans_joined": joined,
                "statuses_moved": statuses,
            },
        )
        return {**asdict(result), "orphans_joined": joined, "statuses_moved": statuses}

    return _decorated(sweep, publish_metrics, traced=False, cold_start_metric=False)


def url_function(app: Any, *, publish_metrics: bool = True) -> LambdaFunction:
    """A resolver behind its function URL (the bounce webhook, the unsubscribe endpoint):
    one request in, a status out."""

    def receive(event: dict[str, Any], context: Any) -> Any:
        return app.resolve(event, context)

    return _decorated(receive, publish_metrics, traced=True, cold_start_metric=False)


#: blastengine's bounce webhook: one POST of blastengine's in, a status out.
webhook_function = url_function


def ses_events_function(events: SesEvents, *, publish_metrics: bool = True) -> LambdaFunction:
    """SES's events, one EventBridge event per invocation: bounces, complaints, sends."""

    def receive(event: dict[str, Any], context: Any) -> Any:
        return events.handle(event)

    return _decorated(receive, publish_metrics, traced=False, cold_start_metric=False)


def _decorated(
    function: LambdaFunction, publish_metrics: bool, *, traced: bool, cold_start_metric: bool
) -> LambdaFunction:
    # Disabled, Powertools neither prints nor clears a warm container's metrics (nor skips
    # the cold-start one): they are dropped after each invocation here instead.
    if publish_metrics and not is_metrics_disabled():
        function = metrics.log_metrics(function, capture_cold_start_metric=cold_start_metric)
    else:
        function = _dropping_metrics(function)
    if traced:
        function = traced_handler(function)
    return cast("LambdaFunction", logger.inject_lambda_context(function))


def _dropping_metrics(function: LambdaFunction) -> LambdaFunction:
    @wraps(function)
    def run(event: dict[str, Any], context: Any) -> Any:
        try:
            return function(event, context)
        finally:
            metrics.clear_metrics()

    return run
