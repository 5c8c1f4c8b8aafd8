"""blastengine's bounce webhook body, read into :class:`~dispatcher.bounces.event.BounceEvent`
values, or refused with a reason that repeats none of it (it holds addresses)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dispatcher.bounces.event import BLASTENGINE_KINDS, BounceEvent, BounceType
from dispatcher.recipients.suppression import normalise

__all__ = ["MAX_DELIVERY_ID_CHARS", "MAX_EVENTS", "BadBounceError", "parse_events"]

#: A delivery id is a number; 20 digits hold any 64-bit one.
MAX_DELIVERY_ID_CHARS = 20

#: Events one POST may carry; blastengine batches a few, a flood is not a webhook.
MAX_EVENTS = 500


class BadBounceError(ValueError):
    """A webhook body that is not blastengine's bounce shape; the message names no person."""


def parse_events(body: Any) -> list[BounceEvent]:
    """The events of a webhook body ``{"events": [{"event": {...}}, ...]}``.

    Raises
    ------
    BadBounceError
        For anything else, saying what is wrong without repeating the body (it holds
        addresses and subjects).
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("events"), list):
        raise BadBounceError('the body must be {"events": [...]}')
    items = body["events"]
    if not items:
        raise BadBounceError("no events")
    if len(items) > MAX_EVENTS:
        raise BadBounceError(f"{len(items)} events in one request, over {MAX_EVENTS}")
    return [_event(n, item) for n, item in enumerate(items)]


def _event(n: int, item: Any) -> BounceEvent:
    event = item.get("event") if isinstance(item, Mapping) else None
    if not isinstance(event, Mapping):
        raise BadBounceError(f"events[{n}] has no event object")
    try:
        kind = BounceType(str(event.get("type")))
        if kind not in BLASTENGINE_KINDS:
            raise ValueError
    except ValueError:
        kinds = ", ".join(t.value for t in BLASTENGINE_KINDS)
        raise BadBounceError(f"events[{n}].type must be one of {kinds}") from None
    at = event.get("datetime")
    try:
        if not isinstance(at, str) or len(at) > 40 or datetime.fromisoformat(at).tzinfo is None:
            raise ValueError
    except ValueError:
        raise BadBounceError(f"events[{n}].datetime must be ISO-8601 with an offset") from None
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise BadBounceError(f"events[{n}] has no detail object")
    address = detail.get("mailaddress")
    if not isinstance(address, str) or "@" not in address or len(address) > 254:
        raise BadBounceError(f"events[{n}].detail.mailaddress must be an address")
    delivery = detail.get("delivery_id")
    if (
        isinstance(delivery, bool)
        or not isinstance(delivery, int | str)
        or not 0 < len(str(delivery)) <= MAX_DELIVERY_ID_CHARS
    ):
        raise BadBounceError(
            f"events[{n}].detail.delivery_id must be a number of at most "
            f"{MAX_DELIVERY_ID_CHARS} digits"
        )

    def text(name: str, limit: int) -> str | None:
        value = detail.get(name)
        return str(value)[:limit] if value not in (None, "") else None

    return BounceEvent(
        type=kind,
        at=at,
        address=normalise(address),
        delivery_id=str(delivery),
        code=text("error_code", 16),
        message=text("error_message", 500),
    )
