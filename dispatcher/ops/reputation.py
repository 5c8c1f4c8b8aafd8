"""Resuming a category the reputation guard paused: the pause is lifted (its shares are
judged from now on) and its paused rows re-fired in the order they were held back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dispatcher.model.row import TRANSACTIONAL, string_attribute

if TYPE_CHECKING:
    from dispatcher.ops.admin import Admin

__all__ = ["NotPausedError", "Resumed", "resume"]


class NotPausedError(ValueError):
    """The category was not paused."""


@dataclass
class Resumed:
    category: str
    refired: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # moved on since they were read


def resume(admin: Admin, category: str, *, by: str) -> Resumed:
    """Lift ``category``'s pause and re-fire its paused rows, oldest first."""
    if admin.guard is None:
        raise NotPausedError("this stack has no reputation guard")
    if not admin.guard.resume(category, datetime.now(UTC), by=by):
        raise NotPausedError(f"{category} mail is not paused")
    rows = [
        row
        for row in admin.stamped_rows("paused")
        if (string_attribute(row.image, "category") or TRANSACTIONAL) == category
    ]
    rows.sort(key=lambda r: string_attribute(r.image, "failed_at") or "")
    done = Resumed(category)
    for row in rows:
        (done.refired if admin.refire(row) else done.changed).append(row.id)
    return done
