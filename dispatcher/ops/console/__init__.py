"""The web console: the send table, its failed rows and the history, for people.

Server-rendered pages over :class:`~dispatcher.ops.admin.Admin` (the same queries and conditional
writes as the CLI), each with a JSON twin under ``/api``. It runs on the operator's machine
(``dispatcher console``, ``dispatcher dev``) with the operator's credentials, never in Lambda:
the package leaves it out.
"""

from dispatcher.ops.console.app import create_app
from dispatcher.ops.console.server import ConsoleServer

__all__ = ["ConsoleServer", "create_app"]
