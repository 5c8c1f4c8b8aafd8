"""Scheduled Lambda entry point: ``dispatcher.sweeper.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the work is :mod:`dispatcher.refire`'s
(every minute) and :mod:`dispatcher.reconcile`'s (hourly, ``{"task": "reconcile"}``).
"""

from __future__ import annotations

from dispatcher.functions import sweep_function
from dispatcher.reconcile import Reconciler
from dispatcher.refire import Sweeper
from dispatcher.settings import Settings

_settings = Settings.from_env()
lambda_handler = sweep_function(
    Sweeper.from_settings(_settings), reconciler=Reconciler.from_settings(_settings)
)
