"""Sending a mail again: a new row made from the mail as sent.

The copy is an ordinary row (a new id, ``resent_from`` naming the original send), so it goes
through everything a new row goes through (suppression, allowlist, expiry, limits) and is
sent once, visibly. It needs the mail as sent, which the history keeps for
``HISTORY_BODY_DAYS``; after that there is nothing to copy and the answer says so. The CLI's
``resend`` and the console's "Send again" both come here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer

from dispatcher.model.row import plain

if TYPE_CHECKING:
    from dispatcher.ops.admin import Admin

__all__ = ["ResendError", "Resent", "latest_send", "resend"]


class ResendError(ValueError):
    """There is nothing to send again: no such send, or its body is no longer kept."""


@dataclass(frozen=True)
class Resent:
    inserted: str  # the new row's id
    resent_from: str  # "id @ sent_at" of the original


def latest_send(admin: Admin, row_id: str, sent_at: str | None = None) -> str:
    """The ``sent_at`` of ``row_id``'s send: ``sent_at`` itself if there was such a send,
    else its latest."""
    sends = sorted(plain(item)["sent_at"] for item in admin.history(row_id))
    if not sends:
        raise ResendError(f"no mail was sent under id {row_id!r}")
    if sent_at is None:
        return str(sends[-1])
    if sent_at not in sends:
        raise ResendError(f"{row_id} was not sent at {sent_at!r}; it was at {', '.join(sends)}")
    return sent_at


def resend(
    admin: Admin, row_id: str, *, sent_at: str | None = None, to: str | None = None
) -> Resent:
    """Insert a copy of the mail sent under ``row_id`` (at ``sent_at``, default the latest),
    to ``to`` alone where given. ``to`` must already be a checked address."""
    chosen = latest_send(admin, row_id, sent_at)
    mail = admin.store.sent_mail(row_id, chosen)
    if mail is None:
        raise ResendError(
            f"the mail as sent under {row_id} at {chosen} is no longer kept "
            "(HISTORY_BODY_DAYS): write a new row instead"
        )
    row = _copy(row_id, chosen, mail, to)
    serializer = TypeSerializer()
    admin.put_row({k: serializer.serialize(v) for k, v in row.items()})
    return Resent(inserted=row["id"], resent_from=row["resent_from"])


def _copy(row_id: str, sent_at: str, mail: dict[str, Any], to: str | None) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    row = {k: v for k, v in mail.items() if k not in ("id", "sent_at") and v not in (None, "", [])}
    if to is not None:
        row["to"] = to
        row.pop("cc", None)
        row.pop("bcc", None)
    return {**row, "id": f"{row_id}~resent-{stamp}", "resent_from": f"{row_id} @ {sent_at}"}
