"""A visible queue for outgoing mail: DynamoDB rows in, provider deliveries out.

The Lambda entry points are :mod:`dispatcher.handler` and (for deferred rows)
:mod:`dispatcher.sweeper`; the pieces they compose are importable from here.
"""

from dispatcher.config.settings import Settings, SettingsError
from dispatcher.flow.triage import Decision, triage
from dispatcher.model.message import Encode, Message, parse_message
from dispatcher.model.row import ErrorKind, Row, RowStatus

__all__ = [
    "Decision",
    "Encode",
    "ErrorKind",
    "Message",
    "Row",
    "RowStatus",
    "Settings",
    "SettingsError",
    "parse_message",
    "triage",
]

__version__ = "0.1.0"
