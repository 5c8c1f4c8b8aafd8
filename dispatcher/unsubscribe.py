"""Lambda entry point for one-click unsubscribe: ``dispatcher.unsubscribe.lambda_handler``.

Built once at import, like :mod:`dispatcher.webhook`; the endpoint is
:mod:`dispatcher.unsubscribes.endpoint`'s, the links
:mod:`dispatcher.recipients.unsubscribe_links`'.
"""

from __future__ import annotations

from dispatcher.config.settings import Settings
from dispatcher.functions import url_function
from dispatcher.unsubscribes.endpoint import app_from_settings

lambda_handler = url_function(app_from_settings(Settings.from_env()))
