"""Lambda entry point for the send table's stream: ``dispatcher.handler.lambda_handler``.

Everything is built once at import, so warm invocations reuse the DynamoDB client, the
keep-alive HTTP connections and the thread pool. A missing setting fails the import, naming
the variable, rather than failing every record.
"""

from __future__ import annotations

from dispatcher.config.settings import Settings
from dispatcher.flow.dispatch import Dispatcher
from dispatcher.functions import dispatch_function

lambda_handler = dispatch_function(Dispatcher.from_settings(Settings.from_env()))
