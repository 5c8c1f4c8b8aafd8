"""The one place a history item's delivery status changes: a conditional update on the
status's rank, so reports may come late, twice or out of order and the item still only
moves forward. A report for a mail the history does not hold creates nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from dispatcher.model.delivery_status import DeliveryStatus, StatusReport
from dispatcher.model.row import normalise_address, recipient_digest
from dispatcher.notify.delivery_events import DeliveryEvent, EventPublisher
from dispatcher.storage.dynamodb import conditionally, translated
from dispatcher.support.clock import iso_utc, parse_iso
from dispatcher.support.observability import metrics

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DELIVERY_INDEX", "StatusBook", "went_to"]

#: The history table's index by the provider's delivery id (``template.yaml``).
DELIVERY_INDEX = "by-delivery-id"
#: Metrics and delivery events of the statuses applications and operators watch.
_METRICS = {DeliveryStatus.DELIVERED: "Delivered", DeliveryStatus.DELAYED: "Delayed"}
_EVENTS = {DeliveryStatus.DELIVERED: "Mail Delivered", DeliveryStatus.DELAYED: "Mail Delayed"}


class StatusBook:
    """Moves history items' delivery statuses forward."""

    def __init__(
        self,
        *,
        history_table: str,
        boto3_client: DynamoDBClient,
        events: EventPublisher | None = None,
    ) -> None:
        self.history_table = history_table
        self._client = boto3_client
        self._events = events

    def deliveries(self, delivery_id: str) -> list[dict[str, Any]]:
        """The history items of one provider delivery (the ``by-delivery-id`` index)."""
        with translated():
            return self._client.query(
                TableName=self.history_table,
                IndexName=DELIVERY_INDEX,
                KeyConditionExpression="delivery_id = :d",
                ExpressionAttributeValues={":d": {"S": delivery_id}},
            ).get("Items", [])

    def record(self, report: StatusReport, items: list[dict[str, Any]] | None = None) -> int:
        """Apply ``report`` to the items of its delivery whose ``to`` it names (the status is
        the row's own recipient's; cc and bcc bounces stay in ``bounced_addresses``); how
        many moved. No item of the delivery at all: counted (``StatusForUnknownMail``) and
        dropped, never made into an item."""
        found = self.deliveries(report.delivery_id) if items is None else items
        if not found:
            metrics.add_metric(name="StatusForUnknownMail", unit=MetricUnit.Count, value=1)
            return 0
        mine = [item for item in found if _to_is(item, report.address)]
        moved = sum(self._advance(item, report) for item in mine)
        if moved and report.status in _METRICS:
            metrics.add_metric(name=_METRICS[report.status], unit=MetricUnit.Count, value=moved)
        return moved

    def record_open(self, delivery_id: str, at: str, *, address: str | None = None) -> int:
        """Keep the earliest open reported of a delivery's items (those to ``address`` where
        named) as ``opened_at``; how many changed. Opens are a hint, not a status: an
        open never moves ``delivery_status``, and mail apps that fetch every image (Apple
        Mail Privacy Protection) open mail nobody read."""
        found = self.deliveries(delivery_id)
        if not found:
            metrics.add_metric(name="StatusForUnknownMail", unit=MetricUnit.Count, value=1)
            return 0
        when = parse_iso(at)
        stamp = iso_utc(when) if when else at
        opened = 0
        for item in found:
            known = item.get("opened_at", {}).get("S")
            if (known and known <= stamp) or (address and not _to_is(item, address)):
                continue
            opened += conditionally(
                self._client.update_item,
                TableName=self.history_table,
                Key={"id": item["id"], "sent_at": item["sent_at"]},
                UpdateExpression="SET opened_at = :at",
                # the earliest open wins, whatever order the reports come in
                ConditionExpression=(
                    "attribute_exists(id) AND (attribute_not_exists(opened_at) OR opened_at > :at)"
                ),
                ExpressionAttributeValues={":at": {"S": stamp}},
            )
        return opened

    def _advance(self, item: Mapping[str, Any], report: StatusReport) -> bool:
        rank = item.get("delivery_status_rank", {}).get("N")
        if isinstance(rank, str) and rank.isdigit() and int(rank) >= report.status.rank:
            return False  # as the item was read: no write for a report that moves nothing
        when = parse_iso(report.at)
        values: dict[str, Any] = {
            ":s": {"S": report.status.value},
            ":r": {"N": str(report.status.rank)},
            ":at": {"S": iso_utc(when) if when else report.at},
        }
        sets = ["delivery_status = :s", "delivery_status_rank = :r", "delivery_status_at = :at"]
        if report.bounded_detail:
            values[":d"] = {"S": report.bounded_detail}
            sets.append("delivery_detail = :d")
        moved = conditionally(
            self._client.update_item,
            TableName=self.history_table,
            Key={"id": item["id"], "sent_at": item["sent_at"]},
            UpdateExpression="SET " + ", ".join(sets),
            # Forward only; and never an item that is not there (no item from an event).
            ConditionExpression=(
                "attribute_exists(id) AND "
                "(attribute_not_exists(delivery_status_rank) OR delivery_status_rank < :r)"
            ),
            ExpressionAttributeValues=values,
        )
        if moved and self._events is not None and report.status in _EVENTS:
            self._events.add([_status_event(report, item)])
        return moved

    def flush_events(self) -> None:
        if self._events is not None:
            self._events.flush()


def went_to(history: Mapping[str, Any], address: str) -> bool:
    """Whether the mail of ``history`` went to ``address``: one of its recipients' digests,
    or, for an item written before recipients were kept, its ``to``."""
    digests = history.get("recipient_digests", {}).get("SS")
    if isinstance(digests, list):
        return recipient_digest(address) in digests
    return _to_is(history, address)


def _to_is(history: Mapping[str, Any], address: str) -> bool:
    to = history.get("to", {}).get("S")
    return isinstance(to, str) and normalise_address(to) == normalise_address(address)


def _status_event(report: StatusReport, history: Mapping[str, Any]) -> DeliveryEvent:
    return DeliveryEvent(
        detail_type=_EVENTS[report.status],
        row_id=str(history["id"]["S"]),
        at=report.at,
        recipient=report.address,
        provider=history.get("provider", {}).get("S") or report.provider,
        delivery_id=report.delivery_id,
        reason=report.bounded_detail,
        identity=(report.delivery_id, report.status.value, report.at),
    )
