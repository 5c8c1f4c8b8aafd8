"""Every sweep asks blastengine's mail log how recent mail fared, within a page budget."""

from __future__ import annotations

from typing import Any

from dispatcher.tracking.book import StatusBook
from dispatcher.tracking.mail_log import PAGE_SIZE, MailLogPoller
from tests.conftest import TABLE_NAMES
from tests.fakes import FakeClock
from tests.functional.conftest import get_history, put_history


class _Log:
    """The mail log: ``results`` in maillog_id order, paged as the API pages them."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = results
        self.asked: list[dict[str, str]] = []

    def mail_results(self, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        asked = dict(params)
        self.asked.append(asked)
        after = int(asked.get("anchor", 0))
        return [r for r in self.results if r["maillog_id"] > after][:PAGE_SIZE]


def _result(n: int, status: str = "SENT", to: str = "ok@example.com") -> dict[str, Any]:
    return {"maillog_id": n, "delivery_id": n, "email": to, "status": status,
            "delivery_time": "2026-11-30T10:00:00+09:00", "last_response_code": "250"}  # fmt: skip


def _poller(dynamodb: Any, log: _Log, pages: int) -> MailLogPoller:
    book = StatusBook(history_table=TABLE_NAMES["HistoryTable"], boto3_client=dynamodb)
    return MailLogPoller(provider=log, book=book, pages=pages, clock=FakeClock())  # type: ignore[arg-type]


def test_each_run_moves_what_the_log_says_within_its_page_budget(dynamodb) -> None:
    # GIVEN two accepted mails, and a log of 2,500 results (most of mail sent elsewhere)
    put_history(dynamodb, delivery_id="3", to="ok@example.com", delivery_status="accepted")
    put_history(
        dynamodb, row_id="order-2", delivery_id="2400", to="ok@example.com",
        delivery_status="accepted",
    )  # fmt: skip
    log = _Log([_result(n) for n in range(1, 2501)])
    poller = _poller(dynamodb, log, pages=2)

    # WHEN a run with a budget of two pages reads the log
    first = poller.poll()

    # THEN it made two requests, moved the first mail, and stopped (truncated)
    assert (first.requests, first.moved, first.truncated) == (2, 1, True)
    assert get_history(dynamodb)["delivery_status"] == {"S": "delivered"}
    # AND the next run goes on from where it stopped, reaching the second mail and the end
    second = poller.poll()
    assert (second.requests, second.moved, second.truncated) == (1, 1, False)
    assert log.asked[-1]["anchor"] == "2000"
    assert get_history(dynamodb, row_id="order-2")["delivery_status"] == {"S": "delivered"}
    # AND after the end it reads the window again from its start, moving nothing twice, and
    # asking the history nothing for results it already applied
    asked = []
    poller._book.record = lambda report, items=None: asked.append(report) or 0  # type: ignore[method-assign]
    third = poller.poll()
    assert "anchor" not in log.asked[-2]
    assert third.moved == 0
    assert asked == []
    # only mail the history holds was touched: no item was made from a result
    assert len(dynamodb.scan(TableName=TABLE_NAMES["HistoryTable"])["Items"]) == 2


def test_a_retry_is_delayed_and_a_later_sent_delivers_it(dynamodb) -> None:
    put_history(dynamodb, delivery_id="1", to="slow@example.com", delivery_status="accepted")
    log = _Log([_result(1, "RETRY", "slow@example.com")])
    poller = _poller(dynamodb, log, pages=1)
    poller.poll()
    assert get_history(dynamodb)["delivery_status"] == {"S": "delayed"}
    log.results = [_result(1, "SENT", "slow@example.com")]
    poller.poll()
    assert get_history(dynamodb)["delivery_status"] == {"S": "delivered"}


def test_an_open_time_the_log_gains_later_is_kept_once(dynamodb) -> None:
    # GIVEN a mail the log says was delivered, not yet opened
    put_history(dynamodb, delivery_id="1", to="reader@example.com", delivery_status="accepted")
    log = _Log([_result(1, "SENT", "reader@example.com")])
    poller = _poller(dynamodb, log, pages=1)
    poller.poll()
    assert "opened_at" not in get_history(dynamodb)
    # WHEN a later run finds the same result with an open_time (blastengine tracks opens)
    log.results = [{**_result(1, "SENT", "reader@example.com"),
                    "open_time": "2026-11-30T10:05:00+09:00"}]  # fmt: skip
    poller.poll()
    # THEN it is kept as opened_at (UTC), and the status stays delivered
    item = get_history(dynamodb)
    assert item["opened_at"] == {"S": "2026-11-30T01:05:00.000Z"}
    assert item["delivery_status"] == {"S": "delivered"}
    # AND a run that sees it again writes nothing
    writes = []
    poller._book.record_open = lambda *a, **k: writes.append(a) or 0  # type: ignore[method-assign]
    poller.poll()
    assert writes == []


def test_a_cold_container_goes_on_from_the_shared_cursor_and_rereads_no_history(
    dynamodb,
) -> None:
    from datetime import timedelta

    from dispatcher.tracking.cursor import LogCursor

    clock = FakeClock()
    past = (clock.now() - timedelta(hours=1)).isoformat()
    log = _Log([{**_result(n), "updated_time": past} for n in range(1, 1501)])
    put_history(dynamodb, delivery_id="1400", to="ok@example.com", delivery_status="accepted")
    cursor = LogCursor(dynamodb, TABLE_NAMES["RateLimitTable"])

    def container() -> MailLogPoller:
        book = StatusBook(history_table=TABLE_NAMES["HistoryTable"], boto3_client=dynamodb)
        return MailLogPoller(provider=log, book=book, pages=1, cursor=cursor, clock=clock)  # type: ignore[arg-type]

    # GIVEN a pass cut short by its page budget in one container
    assert container().poll().truncated
    # WHEN another container (cold) runs: it goes on from the shared anchor, to the end
    second = container()
    finished = second.poll()
    assert log.asked[-1]["anchor"] == "1000"
    assert (finished.truncated, finished.moved) == (False, 1)
    # THEN a third, cold too, reads the window again but asks the history nothing for
    # results the whole pass applied...
    asked = []
    third = container()
    third._book.record = lambda report, items=None: asked.append(report) or 0  # type: ignore[method-assign]
    third._pages = 2
    assert third.poll().requests == 2
    assert asked == []
    # ... and applies a result that changed since (a RETRY that became SENT)
    log.results[0] = {**_result(1), "updated_time": clock.now().isoformat()}
    third.poll()
    assert [r.delivery_id for r in asked] == ["1"]
