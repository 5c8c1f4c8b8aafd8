"""The bookkeeping a row that stays in the send table is stamped with.

What the failure policy decides (``dispatcher.flow.failure_policy``), what the store writes
(``dispatcher.storage.store``) and what a delivery event reports; a value, so the three agree
without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.model.row import ErrorKind, RowStatus
from dispatcher.model.unsettled import Unsettled

__all__ = ["FailureStamp"]


@dataclass(frozen=True)
class FailureStamp:
    """The bookkeeping written onto a row that stays in the send table."""

    status: RowStatus
    attempts: int
    stamped_at: str
    last_error: str | None = None
    error_kind: ErrorKind | None = None
    http_status: int | None = None
    retry_at: str | None = None
    #: A send that may have been taken, kept on the row until a look-up settles it; None
    #: removes the row's marker. Set by the dispatcher alone, on every stamp it writes
    #: (``Dispatcher._write``): the policy decides the stamp, not what the row remembers.
    unsettled: Unsettled | None = None

    def describe(self) -> str:
        """One line for the logs and the CLI: ``deferred until ... (transient): HTTP 503``."""
        if self.status is RowStatus.SCHEDULED:
            return f"scheduled for {self.retry_at}"
        until = f" until {self.retry_at}" if self.retry_at else ""
        if self.error_kind is None:
            return f"{self.status.value}{until}"
        return f"{self.status.value}{until} ({self.error_kind.value}): {self.last_error}"
