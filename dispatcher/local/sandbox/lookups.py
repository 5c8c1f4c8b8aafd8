"""The sandbox's lookups, in blastengine's shapes: ``GET /deliveries/{id}`` and
``GET /logs/mails/results``, answered from the mail it kept."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.local.sandbox.model import SentMail

__all__ = ["RESULT_STATUSES", "bounce_events", "delivery_detail", "mail_results"]


#: The recipient results a kept mail has (bounces are reported as they arrive, issue 13).
RESULT_STATUSES = ("SENT", "RETRY", "HARDERROR", "SOFTERROR", "DROP")


def delivery_detail(mail: SentMail) -> dict[str, Any]:
    """A delivery's detail in blastengine's shape (the fields its SDK reads)."""
    p = mail.payload
    recipients = 1 + len(p.get("cc", [])) + len(p.get("bcc", []))
    kinds = list(mail.bounces.values())
    sender = p.get("from", {})
    return {
        "delivery_id": mail.delivery_id,
        "delivery_type": "TRANSACTION",
        "status": "SENT",
        "from": {"email": sender.get("email"), "name": sender.get("name", "")},
        "subject": p.get("subject"),
        "text_part": p.get("text_part"),
        "html_part": p.get("html_part"),
        "total_count": recipients,
        "sent_count": recipients - len(kinds),
        "drop_count": kinds.count("DROP"),
        "hard_error_count": kinds.count("HARDERROR"),
        "soft_error_count": kinds.count("SOFTERROR"),
        "open_count": 0,
        "delivery_time": mail.received_at,
        "reservation_time": None,
        "created_time": mail.received_at,
        "updated_time": mail.received_at,
    }


def mail_results(
    mails: list[SentMail], query: dict[str, list[str]], *, soft_retry: float = 5.0
) -> tuple[int, dict[str, Any]]:
    """``GET /logs/mails/results``: one result per recipient, oldest first, filtered by
    ``delivery_id``, ``email``, ``status[]``, ``delivery_start``/``delivery_end``, paged by
    ``count`` (1-1000) after ``anchor`` (the last ``maillog_id`` seen). A soft-bounced
    recipient is ``SOFTERROR`` for ``soft_retry`` seconds, then ``SENT`` (a retry got it
    through)."""
    asked = _ResultsQuery.read(query)
    if isinstance(asked, dict):
        return 400, {"error_messages": asked}
    now = datetime.now(UTC)
    results = [
        result
        for result in _recipient_results(mails, now, timedelta(seconds=soft_retry))
        if asked.matches(result)
    ]
    return 200, {"data": results[: asked.count]}


@dataclass(frozen=True)
class _ResultsQuery:
    """What a request to the mail results asks for."""

    count: int
    anchor: int
    delivery_id: str | None
    email: str | None
    statuses: frozenset[str]
    start: datetime | None
    end: datetime | None

    @classmethod
    def read(cls, query: dict[str, list[str]]) -> _ResultsQuery | dict[str, list[str]]:
        """The query, or its problems by parameter."""

        def first(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        problems: dict[str, list[str]] = {}
        try:
            count = int(first("count") or 100)
            anchor = int(first("anchor") or 0)
            if not 1 <= count <= 1000:
                raise ValueError
        except ValueError:
            problems["count"] = ["must be a number from 1 to 1000 (anchor: a maillog_id)"]
            count, anchor = 100, 0
        window = []
        for name in ("delivery_start", "delivery_end"):
            raw = first(name)
            moment = _moment(raw) if raw else None
            if raw and moment is None:
                problems[name] = ["must be ISO-8601 with an offset"]
            window.append(moment)
        statuses = frozenset(query.get("status[]", []) or query.get("status", []))
        if statuses - set(RESULT_STATUSES):
            problems["status"] = [f"must be among {', '.join(RESULT_STATUSES)}"]
        if problems:
            return problems
        return cls(count, anchor, first("delivery_id"), first("email"), statuses, *window)

    def matches(self, result: dict[str, Any]) -> bool:
        sent = datetime.fromisoformat(result["delivery_time"])
        return (
            result["maillog_id"] > self.anchor
            and self.delivery_id in (None, str(result["delivery_id"]))
            and self.email in (None, result["email"])
            and (not self.statuses or result["status"] in self.statuses)
            and (self.start is None or sent >= self.start)
            and (self.end is None or sent <= self.end)
        )


def _moment(raw: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _recipient_results(
    mails: list[SentMail], now: datetime, soft_retry: timedelta
) -> Iterator[dict[str, Any]]:
    """Every recipient of every mail taken, as a result, numbered from 1 in order."""
    serial = 0
    for mail in mails:
        p = mail.payload
        taken = datetime.fromisoformat(mail.received_at)
        for address in (p.get("to"), *p.get("cc", []), *p.get("bcc", [])):
            serial += 1
            status, updated = mail.bounces.get(address, "SENT"), taken
            if status == "SOFTERROR" and now >= taken + soft_retry:
                status, updated = "SENT", taken + soft_retry  # the retry got it through
            yield {
                "maillog_id": serial,
                "delivery_id": mail.delivery_id,
                "delivery_type": "TRANSACTION",
                "email": address,
                "status": status,
                "delivery_time": mail.received_at,
                "created_time": mail.received_at,
                "updated_time": updated.isoformat(timespec="milliseconds"),
                "open_time": None,
                **_last_response(status),
            }


def _last_response(status: str) -> dict[str, str]:
    code, message = {
        "SENT": ("250", "OK (sandbox)"),
        "SOFTERROR": ("452", "mailbox full (sandbox)"),
        "DROP": ("550", "on the stop list (sandbox)"),
    }.get(status, ("550", "user unknown (sandbox)"))
    return {"last_response_code": code, "last_response_message": message}


def bounce_events(mail: SentMail) -> list[dict[str, Any]]:
    """A mail's bounces as blastengine's webhook carries them (``BLASTENGINE.md``)."""
    at = datetime.fromisoformat(mail.received_at).isoformat(timespec="seconds")
    return [
        {
            "event": {
                "type": kind,
                "datetime": at,
                "detail": {
                    "mailaddress": address,
                    "subject": mail.payload.get("subject", ""),
                    "error_code": _last_response(kind)["last_response_code"],
                    "error_message": _last_response(kind)["last_response_message"],
                    "delivery_id": mail.delivery_id,
                },
            }
        }
        for address, kind in mail.bounces.items()
    ]
