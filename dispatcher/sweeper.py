"""Scheduled Lambda entry point: ``dispatcher.sweeper.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the work is :mod:`dispatcher.flow.sweep`'s
(every minute) and :mod:`dispatcher.bounces.catch_up`'s (hourly, ``{"task": "reconcile"}``).
"""

from __future__ import annotations

from dispatcher.bounces.catch_up import Reconciler
from dispatcher.config.settings import Settings
from dispatcher.flow.sweep import Sweeper
from dispatcher.functions import sweep_function
from dispatcher.tracking.mail_log import MailLogPoller

_settings = Settings.from_env()
lambda_handler = sweep_function(
    Sweeper.from_settings(_settings),
    reconciler=Reconciler.from_settings(_settings),
    mail_log=MailLogPoller.from_settings(_settings),
)
