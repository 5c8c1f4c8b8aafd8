"""Scheduled Lambda entry point: ``dispatcher.sweeper.lambda_handler``.

Built once at import, like :mod:`dispatcher.handler`; the work is :mod:`dispatcher.refire`'s.
"""

from __future__ import annotations

from dispatcher.functions import sweep_function
from dispatcher.refire import Sweeper
from dispatcher.settings import Settings

lambda_handler = sweep_function(Sweeper.from_settings(Settings.from_env()))
