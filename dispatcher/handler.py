"""Lambda entry point for the send table's stream: ``dispatcher.handler.lambda_handler``.

Everything is built once at import, so warm invocations reuse the DynamoDB client, the
keep-alive HTTP connections and the thread pool. A missing setting fails the import, naming
the variable, rather than failing every record.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from dispatcher.dispatch import Dispatcher
from dispatcher.observability import logger, metrics, traced_handler
from dispatcher.settings import Settings

dispatcher = Dispatcher.from_settings(Settings.from_env())


@logger.inject_lambda_context
@traced_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return dispatcher.handle_batch(event, context)
