"""Asking SES whether it took a mail whose answer never came.

SES has no API that lists the mail it took. What it has is event publishing: with the
deployment's configuration set, every mail SES accepts produces a ``Send`` event carrying the
message's tags, which the SES events function (:mod:`dispatcher.bounces.ses_events`) keeps in the
bounce table as a *send record* under the row's digest (:func:`~dispatcher.providers.ses.client.
row_digest`): ``delivery_id`` = ``ses-send#<row digest>``, ``event_key`` = ``<SES's timestamp>#
<content hash>#<message id>``. The look-up reads the records of the row around the window and
takes the one with the content that was sent.

SES publishes its events within seconds; ``LOOKUP_DELAY_SECONDS`` (ten minutes) covers a
slow event path. Without a configuration set there are no send records, and an ambiguous SES
send cannot be settled: the look-up says so (the row waits, then fails ``ambiguous`` with the
question stated, for a person to answer).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.model.unsettled import Unsettled
from dispatcher.providers.base import Found
from dispatcher.providers.errors import ConfigError, TransientError
from dispatcher.providers.ses.client import row_digest
from dispatcher.support.clock import iso_utc, parse_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["SEND_RECORD_PREFIX", "SesLookup", "SesSendLog"]

SEND_RECORD_PREFIX = "ses-send#"
#: SES's clock and ours may disagree; its timestamp is when it accepted the request.
CLOCK_MARGIN_SECONDS = 30.0
#: Send records are kept as long as a look-up may ask (the idempotency record's life).
RECORD_DAYS = 3


class SesSendLog:
    """The send records SES's ``Send`` events leave in the bounce table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def record(self, *, row: str, content_hash: str, message_id: str, at: datetime) -> None:
        """Keep one ``Send`` event (the same event twice writes the same item)."""
        self._client.put_item(
            TableName=self._table,
            Item={
                "delivery_id": {"S": SEND_RECORD_PREFIX + row},
                "event_key": {"S": f"{iso_utc(at)}#{content_hash}#{message_id}"},
                "message_id": {"S": message_id},
                "content_hash": {"S": content_hash},
                "received_at": {"S": iso_utc(at)},
                "expires_at": {"N": str(int((at + timedelta(days=RECORD_DAYS)).timestamp()))},
            },
        )

    def sends(self, row: str, start: datetime, end: datetime) -> list[tuple[str, str, datetime]]:
        """(message id, content hash, when) of the row's sends SES took between the two."""
        items = self._client.query(
            TableName=self._table,
            KeyConditionExpression="delivery_id = :row AND event_key BETWEEN :start AND :end",
            ExpressionAttributeValues={
                ":row": {"S": SEND_RECORD_PREFIX + row},
                ":start": {"S": iso_utc(start)},
                ":end": {"S": iso_utc(end) + "~"},  # past any "#..." suffix of that instant
            },
            ConsistentRead=True,
        ).get("Items", [])
        out = []
        for item in items:
            at = parse_iso(item.get("received_at", {}).get("S"))
            message_id = item.get("message_id", {}).get("S")
            if at is not None and message_id:
                out.append((message_id, item.get("content_hash", {}).get("S", ""), at))
        return out


class SesLookup:
    """Finds the SES message an ambiguous send became, from the send records."""

    name = "ses"

    def __init__(self, log: SesSendLog | None) -> None:
        self._log = log

    def find(
        self, unsettled: Unsettled, *, timeout: float, before_request: Callable[[], None]
    ) -> Found | None:
        """The message that matches ``unsettled``, or None if SES took none.

        No request goes to SES (the records are in DynamoDB), so no slot is taken.

        Raises
        ------
        ProviderError
            Nothing can be concluded: no configuration set (no records), a marker from
            before markers named their row, or the table failed.
        """
        if self._log is None:
            raise ConfigError(
                "SES sends are settled from its Send events: set SES_CONFIGURATION_SET (and "
                "BOUNCE_TABLE_NAME) so they are kept"
            )
        if not unsettled.row_id:
            raise ConfigError("the marker names no row; SES's send records are kept by row")
        margin = timedelta(seconds=CLOCK_MARGIN_SECONDS)
        try:
            sends = self._log.sends(
                row_digest(unsettled.row_id),
                unsettled.opened_at - margin,
                unsettled.closed_at + margin,
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"the SES send records could not be read ({exc})") from None
        matching = [(m, at) for m, content, at in sends if content == unsettled.content_hash]
        if not matching:
            return None
        message_id, at = min(
            matching, key=lambda s: abs((s[1] - unsettled.opened_at).total_seconds())
        )
        return Found(delivery_id=message_id, taken_at=at)
