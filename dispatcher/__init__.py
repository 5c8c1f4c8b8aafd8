"""A visible queue for outgoing mail: DynamoDB rows in, provider deliveries out.

The Lambda entry points are :mod:`dispatcher.handler` and (for deferred rows)
:mod:`dispatcher.sweeper`; the pieces they compose are importable from here.
"""

from dispatcher.message import Encode, Message, parse_message
from dispatcher.row import ErrorKind, Row, RowStatus
from dispatcher.settings import Settings, SettingsError
from dispatcher.triage import Decision, triage

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
