"""SES's events, as its configuration set publishes them to EventBridge, put where they matter.

- ``Bounce`` and ``Complaint`` take the same path as blastengine's webhook
  (:class:`~dispatcher.bounces.ledger.BounceLedger`): kept in the bounce table, joined to the
  history item of their delivery (the SES message id is the history item's ``delivery_id``), kept as
  orphans until it exists. A ``Permanent`` bounce is recorded as ``HARDERROR`` and suppresses
  the address; ``Transient`` and ``Undetermined`` as ``SOFTERROR``, recorded only; a complaint
  as ``COMPLAINT``, which suppresses (the recipient asked for no more mail). One suppression
  list serves both providers.
- ``Delivery``, ``DeliveryDelay`` and ``Reject`` move the history item's delivery status
  forward (:mod:`dispatcher.tracking.book`); ``Open`` and ``Click``, published only where
  the stack's ``SesOpenTracking`` is on, keep the first open as ``opened_at``.
- ``Send`` leaves a send record (:class:`~dispatcher.providers.ses.lookup.SesSendLog`): what
  settles a send whose answer never came.

EventBridge delivers at least once, and each write is idempotent (the event's key), so a
redelivered event changes nothing. An event that is not SES's shape is logged by what is wrong
and dropped (a retry would meet it again); a DynamoDB failure raises, so that EventBridge's
retry applies it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dispatcher.bounces.event import BounceEvent, BounceType
from dispatcher.bounces.ledger import BounceLedger
from dispatcher.config.settings import Settings, SettingsError
from dispatcher.model.delivery_status import DeliveryStatus, StatusReport
from dispatcher.providers.ses.client import CONTENT_TAG, ROW_TAG
from dispatcher.providers.ses.lookup import SesSendLog
from dispatcher.recipients.suppression import normalise
from dispatcher.support.clock import parse_iso
from dispatcher.support.observability import logger, metrics

__all__ = ["BadSesEventError", "SesEvents", "parse_bounces", "parse_statuses"]

_BOUNCE_TYPES = {"Permanent": BounceType.HARDERROR}


class BadSesEventError(ValueError):
    """Not an SES event this function can use; the message names no address."""


@dataclass(frozen=True)
class Handled:
    kind: str
    recorded: int


def parse_bounces(detail: Mapping[str, Any]) -> list[BounceEvent]:
    """One :class:`BounceEvent` per recipient of a ``Bounce`` or ``Complaint`` event."""
    mail = _mapping(detail, "mail")
    message_id = _text(mail, "messageId")
    if detail.get("eventType") == "Bounce":
        bounce = _mapping(detail, "bounce")
        kind = _BOUNCE_TYPES.get(str(bounce.get("bounceType")), BounceType.SOFTERROR)
        at = _time(bounce)
        recipients = _list(bounce, "bouncedRecipients")
        code = bounce.get("bounceSubType")
    else:
        complaint = _mapping(detail, "complaint")
        kind, at = BounceType.COMPLAINT, _time(complaint)
        recipients = _list(complaint, "complainedRecipients")
        code = complaint.get("complaintFeedbackType") or complaint.get("complaintSubType")
    events = []
    for n, recipient in enumerate(recipients):
        address = recipient.get("emailAddress") if isinstance(recipient, Mapping) else None
        if not isinstance(address, str) or "@" not in address or len(address) > 254:
            raise BadSesEventError(f"recipient {n} has no address")
        status = recipient.get("status") if isinstance(recipient, Mapping) else None
        diagnostic = recipient.get("diagnosticCode") if isinstance(recipient, Mapping) else None
        events.append(
            BounceEvent(
                type=kind,
                at=at,
                address=normalise(address),
                delivery_id=message_id,
                code=str(status or code or "")[:16] or None,
                message=str(diagnostic)[:500] if diagnostic else None,
            )
        )
    return events


#: SES's events that report a mail's delivery status, and the part each keeps it in.
_STATUS_EVENTS = {
    "Delivery": ("delivery", DeliveryStatus.DELIVERED),
    "DeliveryDelay": ("deliveryDelay", DeliveryStatus.DELAYED),
    "Reject": ("reject", DeliveryStatus.REJECTED),
}

#: SES's events of an open (with tracking on: the SesOpenTracking parameter), and their part.
_OPEN_EVENTS = {"Open": "open", "Click": "click"}


def parse_statuses(detail: Mapping[str, Any]) -> list[StatusReport]:
    """One report per recipient of a Delivery or DeliveryDelay event; a Reject (SES refused
    the whole mail before sending it) one per destination."""
    mail = _mapping(detail, "mail")
    message_id = _text(mail, "messageId")
    part, status = _STATUS_EVENTS[str(detail.get("eventType"))]
    body = _mapping(detail, part)
    if part == "delivery":
        addresses = _list(body, "recipients")
        reason = body.get("smtpResponse")
    elif part == "deliveryDelay":
        delayed = _list(body, "delayedRecipients")
        addresses = [r.get("emailAddress") if isinstance(r, Mapping) else None for r in delayed]
        first = delayed[0] if isinstance(delayed[0], Mapping) else {}
        reason = first.get("diagnosticCode") or body.get("delayType")
    else:
        addresses = _list(mail, "destination")
        reason = body.get("reason")
    at = _time(body) if "timestamp" in body else _time(mail)
    reports = []
    for n, address in enumerate(addresses):
        if not isinstance(address, str) or "@" not in address or len(address) > 254:
            raise BadSesEventError(f"recipient {n} has no address")
        reports.append(
            StatusReport(
                delivery_id=message_id,
                address=normalise(address),
                status=status,
                at=at,
                detail=str(reason) if reason else None,
                provider="ses",
            )
        )
    return reports


class SesEvents:
    """Applies one EventBridge event from SES."""

    def __init__(self, ledger: BounceLedger, log: SesSendLog) -> None:
        self._ledger = ledger
        self._log = log

    @classmethod
    def from_settings(cls, settings: Settings, *, dynamodb_client: Any = None) -> SesEvents:
        """Over the stack's tables; raises ``SettingsError`` without the bounce table."""
        import boto3

        if not settings.bounce_table_name:
            raise SettingsError("BOUNCE_TABLE_NAME is required")
        client = dynamodb_client or boto3.client("dynamodb")
        ledger = BounceLedger.from_settings(settings, dynamodb_client=client)
        return cls(ledger, SesSendLog(client, settings.bounce_table_name))

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The function's answer: what was recorded, or why the event was dropped."""
        try:
            handled = self._apply(event)
        except BadSesEventError as exc:
            self._ledger.flush_events()
            logger.error("an SES event was dropped", extra={"reason": str(exc)})
            metrics.add_metric(name="SesEventsDropped", unit=MetricUnit.Count, value=1)
            return {"dropped": str(exc)}
        self._ledger.flush_events()
        return {"kind": handled.kind, "recorded": handled.recorded}

    def _apply(self, event: Mapping[str, Any]) -> Handled:
        detail = event.get("detail") if isinstance(event, Mapping) else None
        if not isinstance(detail, Mapping):
            raise BadSesEventError("no detail object (not an EventBridge event from SES)")
        kind = str(detail.get("eventType") or detail.get("notificationType") or "")
        if kind == "Send":
            return Handled(kind, self._record_send(detail))
        if kind in _STATUS_EVENTS:
            return Handled(kind, self._record_status(detail, kind))
        if kind in _OPEN_EVENTS:
            return Handled(kind, self._record_open(detail, kind))
        if kind not in ("Bounce", "Complaint"):
            logger.info("SES event not used", extra={"event_type": kind})
            return Handled(kind or "unknown", 0)
        bounces = parse_bounces(detail)
        joined = 0
        for bounce in bounces:
            # EventBridge redelivers: the ledger counts a bounce once, when it is new
            joined += self._ledger.apply(bounce).joined
        logger.info("SES bounces recorded", extra={"events": len(bounces), "joined": joined})
        return Handled(kind, len(bounces))

    def _record_status(self, detail: Mapping[str, Any], kind: str) -> int:
        """Delivery, DeliveryDelay, Reject: the mail's delivery status moves forward."""
        moved = sum(self._ledger.statuses.record(report) for report in parse_statuses(detail))
        logger.info("SES delivery status recorded", extra={"event_type": kind, "moved": moved})
        return moved

    def _record_open(self, detail: Mapping[str, Any], kind: str) -> int:
        """Open, Click (a click is an open too): the first is kept as ``opened_at``."""
        message_id = _text(_mapping(detail, "mail"), "messageId")
        at = _time(_mapping(detail, _OPEN_EVENTS[kind]))
        opened = self._ledger.statuses.record_open(message_id, at)
        logger.info("SES open recorded", extra={"event_type": kind, "first": opened})
        return opened

    def _record_send(self, detail: Mapping[str, Any]) -> int:
        mail = _mapping(detail, "mail")
        tags = mail.get("tags")
        if not isinstance(tags, Mapping):
            tags = {}
        rows, contents = tags.get(ROW_TAG), tags.get(CONTENT_TAG)
        if not rows or not contents:
            return 0  # not sent by the dispatcher (another sender on the configuration set)
        self._log.record(
            row=str(rows[0]),
            content_hash=str(contents[0]),
            message_id=_text(mail, "messageId"),
            at=_parse_time(mail.get("timestamp"), "mail.timestamp"),
        )
        return 1


def _mapping(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, Mapping):
        raise BadSesEventError(f"no {name} object")
    return value


def _list(parent: Mapping[str, Any], name: str) -> list[Any]:
    value = parent.get(name)
    if not isinstance(value, list) or not value:
        raise BadSesEventError(f"no {name} list")
    return value


def _text(parent: Mapping[str, Any], name: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise BadSesEventError(f"no {name}")
    return value


def _time(parent: Mapping[str, Any]) -> str:
    return _parse_time(parent.get("timestamp"), "timestamp").isoformat()


def _parse_time(value: Any, name: str) -> datetime:
    parsed = parse_iso(value)
    if parsed is None:
        raise BadSesEventError(f"{name} must be ISO-8601 with an offset")
    return parsed
