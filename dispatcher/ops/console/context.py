"""What every console page is given and may answer with: the context, the form, the errors.

A page (a *view*) is a function of the context, the request and the submitted form that
returns a dict (rendered into its template, or returned as JSON under ``/api``) or a response
of its own; :mod:`~dispatcher.ops.console.views` has the pages that read,
:mod:`~dispatcher.ops.console.actions` those that write, :mod:`~dispatcher.ops.console.app`
turns them into routes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from dispatcher.model.row import ErrorKind
from dispatcher.ops.admin import Admin, SentCounts
from dispatcher.ops.console.security import Guard

__all__ = [
    "ERROR_KINDS",
    "PAGE_SIZE",
    "ConsoleError",
    "Context",
    "Form",
    "SentCache",
    "View",
    "done",
    "is_api",
    "row_url",
]

PAGE_SIZE = 50
#: How long a delivery status may take to come: mail without one after this is counted.
SETTLE_BY = timedelta(hours=72)
#: The overview's window of mail sent a day before :data:`SETTLE_BY`.
SETTLED_WINDOW = "72h_ago"
#: How long the overview's history counts (a Scan) are reused before they are read again.
SENT_COUNTS_TTL = 30.0
ERROR_KINDS = tuple(k.value for k in ErrorKind)

#: A POST's fields (a form, or the JSON object a script sent); empty for a GET.
Form = dict[str, str]


class ConsoleError(Exception):
    """A request the console cannot serve, with the status and the words to answer it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: A page: what it shows (a dict, rendered or returned as JSON) or a response of its own.
View = Callable[["Context", Request, Form], "Response | dict[str, Any]"]


@dataclass(frozen=True)
class Context:
    """What every page is given: the operator's queries and writes, the token's guard, the
    stack's name and default sender, the templates, the overview's cached counts."""

    admin: Admin
    guard: Guard
    default_from_email: str
    target: str
    templates: Environment
    sent_cache: SentCache


class SentCache:
    """The overview's sent and bounced counts, read at most every :data:`SENT_COUNTS_TTL`."""

    def __init__(self, admin: Admin) -> None:
        self._admin = admin
        self._lock = threading.Lock()
        self._value: tuple[float, dict[str, SentCounts]] | None = None

    def get(self) -> dict[str, SentCounts]:
        with self._lock:
            if self._value is not None and time.monotonic() - self._value[0] < SENT_COUNTS_TTL:
                return self._value[1]
            now = datetime.now(UTC)
            counts = self._admin.sent_since(
                {
                    "hour": now - timedelta(hours=1),
                    "day": now - timedelta(days=1),
                    # mail past the 72 hours a status may take: what has none stays accepted
                    SETTLED_WINDOW: (now - SETTLE_BY - timedelta(days=1), now - SETTLE_BY),
                }
            )
            self._value = (time.monotonic(), counts)
            return counts


def done(request: Request, where: str, notice: str, data: dict[str, Any]) -> Response:
    """A write's answer: ``data`` as JSON to a script; to a browser, a redirect to ``where``
    carrying the ``notice`` code its next page turns into words."""
    if is_api(request):
        return JSONResponse(data)
    separator = "&" if "?" in where else "?"
    return RedirectResponse(f"{where}{separator}{urlencode({'done': notice})}", status_code=303)


def is_api(request: Request) -> bool:
    """A request to a page's JSON twin."""
    return request.url.path.startswith("/api/")


def row_url(action: str, row_id: str) -> str:
    """A row's page (``rows``) or action, its id quoted ("/" too: the path ends with it)."""
    return f"/{action}/{quote(row_id, safe='')}"
