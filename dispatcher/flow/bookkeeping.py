"""Steps 4 and 5: what is written once a record's send is decided, and the result saying so.

A sent mail's history item and the row's delete go in one transaction; a row that stays is
stamped, conditional on the content that was tried (``DESIGN.md``, "Sending"). Each method
returns the :class:`~dispatcher.flow.outcome.RecordResult` the handler logs, counts and publishes;
:class:`~dispatcher.flow.dispatch.Dispatcher` decides which one applies.
"""

from __future__ import annotations

import random
from dataclasses import replace

from dispatcher.flow.failure_policy import FailurePolicy
from dispatcher.flow.outcome import Outcome, RecordResult
from dispatcher.model.message import Message, expiry_of
from dispatcher.model.row import Row, RowStatus
from dispatcher.model.stamp import FailureStamp
from dispatcher.model.unsettled import Unsettled
from dispatcher.notify.delivery_events import sent_event, stamp_event
from dispatcher.once.send import OnceSender, Sent
from dispatcher.once.settle import LookupFailed, Taken, Wait
from dispatcher.providers.errors import ProviderError
from dispatcher.storage.store import HistoryEntry, Store
from dispatcher.support.clock import Clock, iso_utc
from dispatcher.support.observability import logger

__all__ = ["Bookkeeping"]


class Bookkeeping:
    """The dispatcher's writes after a send or a decision not to send."""

    def __init__(
        self,
        *,
        store: Store,
        sender: OnceSender,
        policy: FailurePolicy,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._store = store
        self._sender = sender
        self._policy = policy
        self._clock = clock
        self._rng = rng

    def confirmed(
        self, row: Row, message: Message, unsettled: Unsettled, taken: Taken
    ) -> RecordResult | None:
        """The look-up found the unanswered send taken: its history item, confirmed by
        look-up. The row is moved if it still holds that mail; if a person has since edited
        it into another mail, that one is still to be sent (None: go on)."""
        found = taken.found
        entry = HistoryEntry(
            id=row.id,
            sent_at=self._store.recorded_at(row.id, found.delivery_id) or iso_utc(found.taken_at),
            provider=taken.provider,
            delivery_id=found.delivery_id,
            to=unsettled.to,
            subject=unsettled.subject or message.subject,
            attempts=row.attempts,
            content_hash=unsettled.content_hash,
            expires_at=self._sender.history_expiry(found.taken_at),
            cc_count=len(message.cc),
            bcc_count=len(message.bcc),
            copies=(*message.cc, *message.bcc),
            confirmed_by="lookup",
        )
        same = message.to == unsettled.to and bool(set(message.digests()) & set(unsettled.digests))
        if not same:
            self._store.record_history(entry)
            logger.info(
                "an earlier send was taken; the row's edited content is sent as a new mail",
                extra={"delivery_id": found.delivery_id},
            )
            return None
        deleted = self._move(entry, row, replayed=False)
        kept = "" if deleted else "; the row changed meanwhile and was kept"
        return RecordResult(
            Outcome.CONFIRMED,
            row.id,
            f"{taken.provider} had taken it as delivery {found.delivery_id} (confirmed by "
            f"look-up); not sent again{kept}",
            event=sent_event(entry),
        )

    def _move(self, entry: HistoryEntry, row: Row, *, replayed: bool) -> bool:
        """Step 4: the history item and the delete, in one transaction; True if deleted.

        A row that changed meanwhile is kept for its own record to send, unless the change
        is a re-fire alone (``revision`` bumped, ``fired_at`` set: the sweeper's, the CLI's,
        the console's), which asked for exactly the mail that just went out. Left, its
        record would send it a second time (or, after a look-up, record it twice).
        """
        if self._store.record_sent(entry, row, replayed=replayed):
            return True
        current = self._store.get_row(row.id)
        if current is None or current.fired_at is None:
            return current is None
        same = current.same_request(row, ignoring=frozenset({"revision"}))
        return same and self._store.delete_answered_refire(current)

    def await_lookup(
        self, row: Row, unsettled: Unsettled, verdict: Wait | LookupFailed, prior: int
    ) -> RecordResult:
        """Not sent: too early to look up, or the look-up failed. The row keeps waiting."""
        now = self._clock.now()
        if isinstance(verdict, Wait):
            stamp = self._policy.ambiguous(unsettled, attempts=prior, now=now)
            return self.keep(row, stamp, unsettled=unsettled)
        stamp = self._policy.lookup_failed(
            unsettled, verdict.error, prior=prior, now=now, rng=self._rng
        )
        return replace(self.keep(row, stamp, unsettled=unsettled), lookup_failed=True)

    def sent(self, row: Row, accepted: Sent) -> RecordResult:
        """Step 4: history item and delete, in one transaction."""
        message = accepted.message
        result = accepted.result
        sent_at = result["sent_at"]
        if accepted.replayed:  # it may have been recorded already, under another key (store)
            sent_at = self._store.recorded_at(message.id, result["delivery_id"]) or sent_at
        entry = HistoryEntry(
            id=message.id,
            sent_at=sent_at,
            provider=result["provider"],
            delivery_id=result["delivery_id"],
            to=message.to,
            subject=message.subject,
            attempts=int(result["attempts"]),
            content_hash=message.content_hash,
            expires_at=result.get("expires_at") or self._sender.history_expiry(self._clock.now()),
            cc_count=len(message.cc),
            bcc_count=len(message.bcc),
            left_out=message.left_out,
            original_recipients=message.original_recipients,
            copies=(*message.cc, *message.bcc),
            # built only where the store keeps it (HISTORY_BODY_DAYS): a send's hot path
            mail=message.as_sent() if self._store.sent_mail_table else None,
            resent_from=message.resent_from,
            template=message.template,
            category=message.category,
        )
        deleted = self._move(entry, row, replayed=accepted.replayed)
        kept = "" if deleted else "; the row changed meanwhile and was kept"
        event = sent_event(entry, left_out=message.left_out)
        if accepted.replayed:
            return RecordResult(
                Outcome.DUPLICATE,
                message.id,
                f"already sent as delivery {result['delivery_id']}; not sent again{kept}",
                event=event,
            )
        return RecordResult(
            Outcome.SENT,
            message.id,
            f"sent through {result['provider']} as delivery {result['delivery_id']}{kept}",
            latency_seconds=accepted.latency_seconds,
            provider=result["provider"],
            event=event,
        )

    def after_error(self, error: ProviderError, prior: int, attempts: int) -> FailureStamp:
        return self._policy.after_error(
            error, prior=prior, attempts=attempts, now=self._clock.now(), rng=self._rng
        )

    def keep(self, row: Row, stamp: FailureStamp, *, unsettled: Unsettled | None) -> RecordResult:
        """Step 5 (and 2's scheduling): stamp a row that stays, conditional on the content
        that was tried. ``unsettled`` is what the row must keep of a send that may have been
        taken (None: nothing, or settled now); every stamp says, so none forgets it."""
        stamp = replace(stamp, unsettled=unsettled)
        if (
            unsettled is None
            and stamp.retry_at is not None
            and (expiry := expiry_of(row)) is not None
        ):
            # A wait never outlasts the row's life: the sweeper comes back by expires_at to
            # expire it (a row waiting on a look-up waits for it, whatever its expiry). Only
            # a row the parser passed waits, so its expiry converts to UTC.
            stamp = replace(stamp, retry_at=min(stamp.retry_at, iso_utc(expiry)))
        parked = (row.status, row.retry_at) == (stamp.status.value, stamp.retry_at)
        if stamp.status is RowStatus.SCHEDULED and parked and unsettled == row.unsettled:
            # Already parked with this time: rewriting identical values would only echo.
            return RecordResult(Outcome.SCHEDULED, row.id, f"already {stamp.describe()}")
        if not self._store.stamp(row, stamp):
            # Edited or removed while we worked: its own record decides its fate.
            return RecordResult(
                Outcome.STALE,
                row.id,
                f"not stamped {stamp.status.value}: the row changed meanwhile",
                error_kind=stamp.error_kind,
            )
        return RecordResult(
            Outcome(stamp.status.value),
            row.id,
            stamp.describe(),
            error_kind=stamp.error_kind,
            event=stamp_event(row, stamp),
        )
