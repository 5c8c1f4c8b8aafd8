"""Lambda entry point for SES's published events: ``dispatcher.ses_handler.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the work is
:mod:`dispatcher.bounces.ses_events`.
"""

from __future__ import annotations

from dispatcher.bounces.ses_events import SesEvents
from dispatcher.config.settings import Settings
from dispatcher.functions import ses_events_function

lambda_handler = ses_events_function(SesEvents.from_settings(Settings.from_env()))
