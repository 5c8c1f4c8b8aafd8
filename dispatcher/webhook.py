"""Lambda entry point for blastengine's bounce webhook: ``dispatcher.webhook.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the receiver is
:mod:`dispatcher.bounce_webhook`'s, the recording :mod:`dispatcher.bounces`'.
"""

from __future__ import annotations

from dispatcher.bounce_webhook import receiver_from_settings
from dispatcher.functions import webhook_function
from dispatcher.settings import Settings

lambda_handler = webhook_function(receiver_from_settings(Settings.from_env()))
