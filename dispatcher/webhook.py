"""Lambda entry point for blastengine's bounce webhook: ``dispatcher.webhook.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the receiver is
:mod:`dispatcher.bounces.webhook`'s, the recording :mod:`dispatcher.bounces.ledger`'.
"""

from __future__ import annotations

from dispatcher.bounces.webhook import receiver_from_settings
from dispatcher.config.settings import Settings
from dispatcher.functions import webhook_function

lambda_handler = webhook_function(receiver_from_settings(Settings.from_env()))
