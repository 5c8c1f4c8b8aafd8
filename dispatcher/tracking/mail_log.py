"""blastengine's mail log, asked every sweep how recent mail fared.

blastengine keeps each recipient's result (``GET /logs/mails/results``: ``SENT``, ``RETRY``,
bounces) for 62 days and tells nobody: the sweeper asks. Each run reads the results of the
last :data:`LOOKBACK`, page by page from where the last run stopped (the window is read again
from its start once the end is reached, so a ``RETRY`` that became ``SENT`` is seen; what a
whole pass already applied is skipped without a history read:
:mod:`~dispatcher.tracking.cursor`), and moves the history items it finds forward (``SENT``
delivered, ``RETRY`` delayed, an ``open_time`` the first open; bounces keep their own path,
the webhook and the hourly catch-up). A run makes at most ``pages`` requests, each a slot of
the account's shared limit, sized to :data:`MAX_SHARE` of it, so sending never waits on it.
Results for mail the history does not hold create nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dispatcher.model.delivery_status import DeliveryStatus, StatusReport
from dispatcher.pacing.invocation_bucket import BucketTimeoutError, RequestSlots
from dispatcher.providers.blastengine.results import MailResult
from dispatcher.providers.errors import ProviderError
from dispatcher.storage.dynamodb import StoreError
from dispatcher.support.clock import SYSTEM_CLOCK, Clock, Deadline, parse_iso
from dispatcher.support.observability import logger
from dispatcher.tracking.book import StatusBook
from dispatcher.tracking.cursor import LogCursor, Position

if TYPE_CHECKING:
    from dispatcher.config.settings import Settings
    from dispatcher.providers.blastengine.client import BlastengineClient

__all__ = ["LOOKBACK", "MAX_SHARE", "MailLogPoller", "PollResult", "delivery_report"]

#: How far back the log is read: a status not final after this is left `accepted`.
LOOKBACK = timedelta(hours=3)
#: The share of the account's limit the log's requests may take.
MAX_SHARE = 0.05
#: How long a changed result may take to show in the log: a pass marks as seen only what
#: changed this long before it began.
LOG_LAG = timedelta(minutes=5)
#: Results per page: the API's largest.
PAGE_SIZE = 1000
#: Applied results a container remembers (a few MB at most).
MAX_REMEMBERED = 100_000
#: blastengine's results that are a delivery status rather than a bounce.
_STATUSES = {"SENT": DeliveryStatus.DELIVERED, "RETRY": DeliveryStatus.DELAYED}


@dataclass
class PollResult:
    requests: int = 0
    results: int = 0
    moved: int = 0
    truncated: bool = False  # the page budget or the deadline stopped it


class MailLogPoller:
    """Reads the mail log within a page budget and moves delivery statuses forward."""

    def __init__(
        self,
        *,
        provider: BlastengineClient,
        book: StatusBook,
        pages: int,
        slots: RequestSlots | None = None,
        cursor: LogCursor | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._provider = provider
        self._book = book
        self._pages = pages
        self._slots = slots
        self._cursor = cursor
        self._clock = clock
        # where this container's last run stopped (the shared cursor's, where there is one)
        self._anchor: str | None = None
        self._seen_until: datetime | None = None
        self._pass_started: datetime | None = None
        #: Results this container already applied, by maillog_id, with their status: the
        #: window is read again and again, and an unchanged result needs no history read.
        self._applied: dict[Any, tuple[str, str | None]] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, dynamodb_client: Any = None, sweep_seconds: float = 60.0
    ) -> MailLogPoller | None:
        """As the sweeper's entry builds it; None where blastengine is not a provider."""
        if "blastengine" not in settings.providers:
            return None
        import boto3

        from dispatcher.notify.delivery_events import EventPublisher
        from dispatcher.pacing.account_limit import LimitTable, SharedBucket, ShareOfTheLimit
        from dispatcher.providers.blastengine.client import BlastengineClient
        from dispatcher.providers.blastengine.credentials import credentials_loader

        client = dynamodb_client or boto3.client("dynamodb")
        tables = LimitTable.per_provider(settings, client, ["blastengine"])
        slots = (
            ShareOfTheLimit(
                SharedBucket(
                    table=tables["blastengine"], rate=settings.rate_limit_rps, clock=SYSTEM_CLOCK
                ),
                share=MAX_SHARE,
                clock=SYSTEM_CLOCK,
            )
            if tables
            else None
        )
        limit_table = settings.rate_limit_table_name
        cursor = LogCursor(client, limit_table) if limit_table else None
        return cls(
            provider=BlastengineClient(
                base_url=settings.blastengine_base_url, credentials=credentials_loader(settings)
            ),
            book=StatusBook(
                history_table=settings.history_table_name,
                boto3_client=client,
                events=EventPublisher.from_settings(settings),
            ),
            pages=max(1, int(MAX_SHARE * settings.rate_limit_rps * sweep_seconds)),
            slots=slots,
            cursor=cursor,
        )

    def poll(self, deadline: Deadline | None = None) -> PollResult:
        result = PollResult()
        now = self._clock.now()
        position = self._position()
        anchor = position.anchor
        started = position.pass_started if anchor and position.pass_started else now
        window = [
            ("delivery_start", (now - LOOKBACK).isoformat(timespec="seconds")),
            ("delivery_end", (now + timedelta(seconds=1)).isoformat(timespec="seconds")),
            ("count", str(PAGE_SIZE)),
            *(("status[]", status) for status in _STATUSES),
        ]
        finished = False
        try:
            for _ in range(self._pages):
                if self._slots is not None:
                    self._slots.acquire(deadline, reserve=1.0)
                page = self._provider.mail_results(
                    window + ([("anchor", anchor)] if anchor else [])
                )
                result.requests += 1
                for item in page:
                    self._apply(MailResult.parse(item), result, position.seen_until)
                if len(page) < PAGE_SIZE:
                    anchor, finished = None, True  # the end: the next run reads it all again
                    break
                anchor = str(page[-1].get("maillog_id"))
            else:
                result.truncated = True
        except (BucketTimeoutError, ProviderError) as exc:
            logger.warning("the mail log was not read to its end", extra={"reason": str(exc)})
            result.truncated = True
        finally:
            self._book.flush_events()
            self._keep(position, anchor, started, finished)
        return result

    def _position(self) -> Position:
        """Where the last run stopped: the shared cursor's, else this container's."""
        if self._cursor is None:
            return Position(self._seen_until, self._anchor, self._pass_started)
        try:
            return self._cursor.read()
        except StoreError as exc:  # a run without it reads the window whole: slower, right
            logger.warning("the mail-log cursor could not be read", extra={"reason": str(exc)})
            return Position()

    def _keep(self, position: Position, anchor: str | None, started: datetime, done: bool) -> None:
        """A finished pass marks what it read as seen (less the log's lag: a result changed
        just before the pass may not have been in it); an unfinished one where it stopped."""
        seen = started - LOG_LAG if done else position.seen_until
        kept = Position(seen, anchor, None if done else started)
        self._seen_until, self._anchor, self._pass_started = (
            kept.seen_until,
            anchor,
            kept.pass_started,
        )
        if self._cursor is None:
            return
        try:
            self._cursor.save(kept)
        except StoreError as exc:
            logger.warning("the mail-log cursor could not be saved", extra={"reason": str(exc)})

    def _apply(
        self, found: MailResult | None, result: PollResult, seen_until: datetime | None
    ) -> None:
        report = delivery_report(found) if found is not None else None
        if found is None or report is None:
            return
        result.results += 1
        changed = parse_iso(found.at)
        if seen_until is not None and changed is not None and changed < seen_until:
            return  # applied by a pass that read the whole window after it changed
        seen = (report.status.value, found.opened_at)
        if self._applied.get(found.maillog_id) == seen:
            return  # applied by an earlier run of this container, unchanged since
        result.moved += self._book.record(report)
        if found.opened_at is not None:
            self._book.record_open(found.delivery_id, found.opened_at, address=found.address)
        self._remember(found.maillog_id, seen)

    def _remember(self, maillog_id: Any, status: tuple[str, str | None]) -> None:
        if len(self._applied) >= MAX_REMEMBERED:
            self._applied.clear()  # a cold container's cost, once in a while
        self._applied[maillog_id] = status


def delivery_report(result: MailResult) -> StatusReport | None:
    """A mail-log result that is a delivery status (``SENT``, ``RETRY``), as a report."""
    status = _STATUSES.get(result.status)
    if status is None or result.at is None:
        return None
    return StatusReport(
        result.delivery_id, result.address, status, result.at, result.detail, provider="blastengine"
    )
