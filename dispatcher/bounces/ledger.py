"""Bounces: providers' reports of recipients they could not reach, recorded where they matter.

One path for every bounce, whether it came by blastengine's webhook, was caught up from its
delivery logs, or came from SES's event publishing (:mod:`dispatcher.bounces.ses_events`; a
complaint is recorded as one more kind) (``DESIGN.md``, "Bounces and suppression"):

1. the event is kept in the bounce table, keyed by delivery id and event (so the same event
   twice changes nothing);
2. it is recorded on the history item of its delivery (found through the history table's
   ``by-delivery-id`` index): ``bounce_type``, ``bounced_at``, ``bounce_code``,
   ``bounce_message``, ``bounce_address``, and every bounced address in ``bounced_addresses``
   (to, cc and bcc can each bounce). An event whose delivery has no history item yet stays an
   *orphan* in the bounce table (a sparse index lists them) and is joined later;
3. ``HARDERROR``, ``DROP`` and ``COMPLAINT`` put the address on the suppression list;
   ``SOFTERROR`` (a full mailbox: it may still arrive) is recorded only, and never suppresses.

An event is applied only to a history item that went to the address it names (the item keeps
its recipients as digests): a bounce for an address the delivery never went to, forged by
someone holding the webhook's URL or of mail sent outside the dispatcher, stays an orphan and
suppresses nothing. Orphans expire after ``ORPHAN_RETENTION_DAYS``; a suppression an operator
lifted is not put back by an event from before the lifting.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from dispatcher.bounces.event import BounceEvent, BounceType
from dispatcher.bounces.signals import bounced_event, count_new_bounce, paused_event
from dispatcher.config.settings import DEFAULT_ORPHAN_RETENTION_DAYS, Settings, SettingsError
from dispatcher.model.delivery_status import StatusReport
from dispatcher.model.row import TRANSACTIONAL
from dispatcher.notify.delivery_events import EventPublisher
from dispatcher.recipients.suppression import Suppression, SuppressionList
from dispatcher.reputation.guard import ReputationGuard
from dispatcher.storage.dynamodb import conditionally, translated
from dispatcher.support.clock import SYSTEM_CLOCK, Clock, iso_utc, parse_iso
from dispatcher.support.observability import logger, metrics
from dispatcher.tracking.book import DELIVERY_INDEX, StatusBook, went_to

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DELIVERY_INDEX", "ORPHAN_INDEX", "Applied", "BounceLedger"]

#: The bounce table's sparse index of events not yet joined to a history item.
ORPHAN_INDEX = "orphans"


@dataclass(frozen=True)
class Applied:
    """What one event changed: whether it was new, and whether a history item has it."""

    new: bool
    joined: bool


class BounceLedger:
    """Applies bounce events to the bounce table, the history and the suppression list."""

    def __init__(
        self,
        *,
        bounce_table: str,
        history_table: str,
        suppressions: SuppressionList,
        boto3_client: DynamoDBClient,
        clock: Clock = SYSTEM_CLOCK,
        events: EventPublisher | None = None,
        orphan_retention: timedelta = timedelta(days=DEFAULT_ORPHAN_RETENTION_DAYS),
        guard: ReputationGuard | None = None,
    ) -> None:
        self.events = events
        self.guard = guard
        self._orphan_retention = orphan_retention
        #: Delivery statuses of the same history items, for the paths that report them.
        self.statuses = StatusBook(
            history_table=history_table, boto3_client=boto3_client, events=events
        )
        self.bounce_table = bounce_table
        self.history_table = history_table
        self._suppressions = suppressions
        self._client = boto3_client
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, dynamodb_client: Any = None) -> BounceLedger:
        """The ledger over the stack's tables, as the webhook and the catch-up build it.

        Raises
        ------
        SettingsError
            Without ``BOUNCE_TABLE_NAME`` and ``SUPPRESSION_TABLE_NAME``.
        """
        import boto3

        if not (settings.bounce_table_name and settings.suppression_table_name):
            raise SettingsError("BOUNCE_TABLE_NAME and SUPPRESSION_TABLE_NAME are required")
        client = dynamodb_client or boto3.client("dynamodb")
        return cls(
            bounce_table=settings.bounce_table_name,
            history_table=settings.history_table_name,
            suppressions=SuppressionList(
                table=settings.suppression_table_name, boto3_client=client
            ),
            boto3_client=client,
            events=EventPublisher.from_settings(settings),
            orphan_retention=timedelta(days=settings.orphan_retention_days),
            guard=ReputationGuard.from_settings(settings, client),
        )

    def deliveries(self, delivery_id: str) -> list[dict[str, Any]]:
        """The history items of one provider delivery (the ``by-delivery-id`` index)."""
        return self.statuses.deliveries(delivery_id)

    def apply(self, event: BounceEvent) -> Applied:
        """Record one event, idempotently; raises a store error for the caller to retry."""
        new = conditionally(
            self._client.put_item,
            TableName=self.bounce_table,
            Item=self._bounce_item(event),
            ConditionExpression="attribute_not_exists(event_key)",
        )
        joined = self._join(event, self.deliveries(event.delivery_id), first=new)
        if new:  # whichever path brought it, a redelivered event is not counted again
            count_new_bounce(event)
        return Applied(new=new, joined=joined)

    def join_orphans(self, *, limit: int = 500) -> int:
        """Join orphan events whose history item exists by now; how many were joined. The
        newest orphans first, one history read per delivery: orphans that never join
        (forged, or of mail sent elsewhere) expire rather than hold every later one back."""
        by_delivery: dict[str, list[BounceEvent]] = {}
        for event in self._orphans(limit):
            by_delivery.setdefault(event.delivery_id, []).append(event)
        joined = 0
        for delivery_id, events in by_delivery.items():
            items = self.deliveries(delivery_id)
            joined += sum(self._join(event, items, first=True) for event in events) if items else 0
        return joined

    def recent(
        self, *, since: str | None = None, kind: BounceType | None = None
    ) -> Iterator[dict[str, Any]]:
        """Bounce events (joined or orphan), received at or after ``since``: a Scan."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        filters = []
        if since:
            names["#r"], values[":since"] = "received_at", {"S": since}
            filters.append("#r >= :since")
        if kind:
            names["#t"], values[":type"] = "type", {"S": kind.value}
            filters.append("#t = :type")
        kwargs: dict[str, Any] = {"TableName": self.bounce_table}
        if filters:
            kwargs.update(
                FilterExpression=" AND ".join(filters),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        with translated():
            for page in self._client.get_paginator("scan").paginate(**kwargs):
                yield from page.get("Items", [])

    def _join(self, event: BounceEvent, deliveries: list[dict[str, Any]], *, first: bool) -> bool:
        """Apply ``event`` to the history items of its delivery that went to its address,
        suppressing the address first (once the history shows the bounce, the address is on
        the list: a row to it inserted on seeing the bounce cannot slip through)."""
        found = [item for item in deliveries if went_to(item, event.address)]
        if not found:
            return False
        if event.type.suppresses:
            self._suppress(event)
        fields = {
            "bounce_type": event.type.value,
            "bounced_at": event.at,
            "bounce_code": event.code,
            "bounce_message": event.message,
            "bounce_address": event.address,
        }
        sets = [f"#f{i} = :f{i}" for i, (_, v) in enumerate(fields.items()) if v]
        names = {f"#f{i}": k for i, (k, v) in enumerate(fields.items()) if v}
        values: dict[str, Any] = {f":f{i}": {"S": v} for i, v in enumerate(fields.values()) if v}
        names["#a"], values[":a"] = "bounced_addresses", {"SS": [event.address]}
        for item in found:
            with translated():
                self._client.update_item(
                    TableName=self.history_table,
                    Key={"id": item["id"], "sent_at": item["sent_at"]},
                    # The latest event's fields, and every address that bounced: a set, so
                    # the same event applied twice adds nothing.
                    UpdateExpression="SET " + ", ".join(sets) + " ADD #a :a",
                    ConditionExpression="attribute_exists(id)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        with translated():
            self._client.update_item(
                TableName=self.bounce_table,
                Key={"delivery_id": {"S": event.delivery_id}, "event_key": {"S": event.key}},
                UpdateExpression="REMOVE orphan, expires_at SET joined_to = :h",
                ExpressionAttributeValues={":h": {"S": found[0]["id"]["S"]}},
            )
        if self.events is not None:
            # Told once it is on a row's history (an orphan, when it is joined).
            self.events.add(bounced_event(event, item) for item in found)
        # The mail's delivery status, where the bounce is its own recipient's (`to`).
        detail = " ".join(filter(None, (event.code, event.message))) or None
        report = StatusReport(
            event.delivery_id, event.address, event.type.delivery_status, event.at, detail
        )
        self.statuses.record(report, items=found)
        if first:  # a redelivered event is counted once
            self._judge(event, found[0])
        return True

    def _judge(self, event: BounceEvent, history: Mapping[str, Any]) -> None:
        """A hard bounce or a complaint counts against its mail's category, and may pause it
        (a ``Sending Paused`` event)."""
        if self.guard is None or event.type not in (BounceType.HARDERROR, BounceType.COMPLAINT):
            return
        category = history.get("category", {}).get("S") or TRANSACTIONAL
        now = self._clock.now()
        hard = event.type is BounceType.HARDERROR
        self.guard.add(category, now, bounced=int(hard), complained=int(not hard))
        judged = self.guard.assess(category, now)
        if judged.warning is not None:
            metrics.add_metric(name="ReputationWarning", unit=MetricUnit.Count, value=1)
        if judged.pause is None:
            return
        logger.warning("sending paused", extra={"category": category, "reason": judged.pause})
        metrics.add_metric(name="SendingPaused", unit=MetricUnit.Count, value=1)
        if self.events is not None:
            self.events.add([paused_event(category, judged.pause, iso_utc(now))])

    def flush_events(self) -> None:
        """Publish the delivery events collected so far (never raises)."""
        if self.events is not None:
            self.events.flush()

    def _suppress(self, event: BounceEvent) -> None:
        entry = Suppression(
            address=event.address,
            reason=event.type.value,
            added_at=iso_utc(self._clock.now()),
            bounced_at=event.at,
            code=event.code,
            message=event.message,
            delivery_id=event.delivery_id,
        )
        happened = parse_iso(event.at)
        self._suppressions.add_once(
            entry, happened_at=iso_utc(happened) if happened else entry.added_at
        )

    def _orphans(self, limit: int) -> Iterator[BounceEvent]:
        with translated():
            pages = self._client.get_paginator("query").paginate(
                TableName=self.bounce_table,
                IndexName=ORPHAN_INDEX,
                KeyConditionExpression="orphan = :o",
                ExpressionAttributeValues={":o": {"S": "1"}},
                ScanIndexForward=False,
                PaginationConfig={"MaxItems": limit},
            )
            for page in pages:
                for item in page.get("Items", []):
                    yield _event_of(item)

    def _bounce_item(self, event: BounceEvent) -> dict[str, Any]:
        fields = {
            "delivery_id": event.delivery_id,
            "event_key": event.key,
            "type": event.type.value,
            "at": event.at,
            "address": event.address,
            "code": event.code,
            "message": event.message,
            "received_at": iso_utc(self._clock.now()),
            "orphan": "1",  # until joined: keys the sparse orphans index
        }
        item: dict[str, Any] = {k: {"S": v} for k, v in fields.items() if v}
        # Until joined, an event expires (the table's TTL): one that never joins goes.
        expiry = self._clock.now() + self._orphan_retention
        item["expires_at"] = {"N": str(int(expiry.timestamp()))}
        return item


def _event_of(item: Mapping[str, Any]) -> BounceEvent:
    def text(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return value if isinstance(value, str) else None

    return BounceEvent(
        type=BounceType(text("type") or ""),
        at=text("at") or "",
        address=text("address") or "",
        delivery_id=text("delivery_id") or "",
        code=text("code"),
        message=text("message"),
    )
