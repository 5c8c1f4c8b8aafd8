"""A visible queue for outgoing mail: DynamoDB rows in, provider deliveries out.

The Lambda entry points are :mod:`dispatcher.handler` and (for deferred rows)
:mod:`dispatcher.sweeper`; the pieces they compose are importable from here.
"""

from dispatcher.message import Encode, ErrorKind, Message, RowStatus, parse_message
from dispatcher.settings import Settings, SettingsError
from dispatcher.triage import Decision, triage

__all__ = [
    "Decision",
    "Encode",
    "ErrorKind",
    "Message",
    "RowStatus",
    "Settings",
    "SettingsError",
    "parse_message",
    "triage",
]

__version__ = "0.1.0"
