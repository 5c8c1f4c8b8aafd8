"""Functional fixtures: the real Dispatcher over moto, blastengine mocked at the httpx layer."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import respx

from dispatcher.config.settings import Settings
from dispatcher.flow.dispatch import Dispatcher
from dispatcher.local.lambda_service.context import LocalContext
from dispatcher.ops.admin import Admin
from dispatcher.recipients.suppression import SuppressionList
from dispatcher.storage.store import Store
from dispatcher.templates.library import TemplateLibrary
from tests.conftest import BASE_URL, TABLE_NAMES, image
from tests.fakes import FakeClock, SerializedClient

TRANSACTION_URL = BASE_URL + "/deliveries/transaction"
RESULTS_URL = BASE_URL + "/logs/mails/results"
DELIVERY_URL = BASE_URL.replace(".", r"\.") + r"/deliveries/\d+$"


class Blastengine:
    """respx routes for blastengine: the transaction API answers from a script, then 201 with
    new ids; the look-ups (``/logs/mails/results``, ``/deliveries/{id}``) answer from the mail
    accepted so far, or 503 while ``lookups_down`` is set."""

    def __init__(self, router: respx.MockRouter, clock: FakeClock) -> None:
        self.script: list[Callable[[httpx.Request], httpx.Response] | httpx.Response] = []
        self._ids = itertools.count(1)
        self._clock = clock
        self.accepted: list[tuple[int, datetime, dict[str, Any]]] = []
        self.lookups_down = False
        self.route = router.post(TRANSACTION_URL).mock(side_effect=self._answer)
        self.results = router.get(RESULTS_URL).mock(side_effect=self._results)
        self.details = router.get(url__regex=DELIVERY_URL).mock(side_effect=self._delivery)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if self.script:
            step = self.script.pop(0)
            return step(request) if callable(step) else step
        return self.accept(request)

    def accept(self, request: httpx.Request) -> httpx.Response:
        """Take the mail (keep it for the look-ups) and answer 201."""
        delivery_id = next(self._ids)
        try:
            payload = json.loads(request.content)
        except ValueError:  # multipart (attachments): not looked up in these tests
            payload = {}
        self.accepted.append((delivery_id, self._clock.now(), payload))
        return httpx.Response(201, json={"delivery_id": delivery_id})

    def accept_then_hang(self, request: httpx.Request) -> httpx.Response:
        """Take the mail, but the answer never reaches the client."""
        self.accept(request)
        raise httpx.ReadTimeout("timed out (test)", request=request)

    def _results(self, request: httpx.Request) -> httpx.Response:
        if self.lookups_down:
            return httpx.Response(503, json={"error_messages": {"server": ["down (test)"]}})
        query = request.url.params
        start = datetime.fromisoformat(query["delivery_start"])
        end = datetime.fromisoformat(query["delivery_end"])
        data = [
            {
                "maillog_id": n,
                "delivery_id": delivery_id,
                "email": payload["to"],
                "status": "SENT",
                "created_time": at.isoformat(),
            }
            for n, (delivery_id, at, payload) in enumerate(self.accepted, 1)
            if payload.get("to") == query["email"] and start <= at <= end
        ]
        return httpx.Response(200, json={"data": data})

    def _delivery(self, request: httpx.Request) -> httpx.Response:
        if self.lookups_down:
            return httpx.Response(503, json={"error_messages": {"server": ["down (test)"]}})
        wanted = int(request.url.path.rsplit("/", 1)[-1])
        for delivery_id, at, payload in self.accepted:
            if delivery_id == wanted:
                return httpx.Response(
                    200,
                    json={
                        "delivery_id": delivery_id,
                        "status": "SENT",
                        "subject": payload["subject"],
                        "text_part": payload["text_part"],
                        "html_part": payload.get("html_part"),
                        "created_time": at.isoformat(),
                    },
                )
        return httpx.Response(404, json={"error_messages": {"delivery_id": ["not found"]}})

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(call.request.content) for call in self.route.calls]


@pytest.fixture
def blastengine(clock: FakeClock) -> Iterator[Blastengine]:
    with respx.mock(assert_all_called=False) as router:
        yield Blastengine(router, clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_dispatcher(
    dynamodb: Any, settings_kwargs: dict[str, Any], clock: FakeClock, rng: Any
) -> Callable[..., Dispatcher]:
    def build(**overrides: Any) -> Dispatcher:
        provider = overrides.pop("provider", None)
        providers = overrides.pop("providers", None)
        ses_client = overrides.pop("ses_client", None)
        events_client = overrides.pop("events_client", None)
        use_clock = overrides.pop("clock", clock)
        settings = Settings.from_env({}, **{**settings_kwargs, **overrides})
        return Dispatcher.from_settings(
            settings,
            dynamodb_client=SerializedClient(dynamodb),
            provider=provider,
            providers=providers,
            ses_client=ses_client,
            events_client=events_client,
            clock=use_clock,
            rng=rng,
        )

    return build


@pytest.fixture
def dispatcher(make_dispatcher: Callable[..., Dispatcher]) -> Dispatcher:
    return make_dispatcher()


class Table:
    """The send and history tables, read and written as an application would."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put(self, values: dict[str, Any]) -> dict[str, Any]:
        item = image(values)
        self.client.put_item(TableName=TABLE_NAMES["SendTable"], Item=item)
        return item

    def put_raw(self, item: dict[str, Any]) -> None:
        self.client.put_item(TableName=TABLE_NAMES["SendTable"], Item=item)

    def get(self, row_id: str) -> dict[str, Any] | None:
        return self.client.get_item(
            TableName=TABLE_NAMES["SendTable"], Key={"id": {"S": row_id}}, ConsistentRead=True
        ).get("Item")

    def update(self, row_id: str, **values: Any) -> dict[str, Any]:
        names = {f"#a{i}": k for i, k in enumerate(values)}
        vals = {f":a{i}": image({"v": v})["v"] for i, v in enumerate(values.values())}
        return self.client.update_item(
            TableName=TABLE_NAMES["SendTable"],
            Key={"id": {"S": row_id}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=vals,
            ReturnValues="ALL_NEW",
        )["Attributes"]

    def delete(self, row_id: str) -> None:
        self.client.delete_item(TableName=TABLE_NAMES["SendTable"], Key={"id": {"S": row_id}})

    def history(self, row_id: str) -> list[dict[str, Any]]:
        return self.client.query(
            TableName=TABLE_NAMES["HistoryTable"],
            KeyConditionExpression="#i = :i",
            ExpressionAttributeNames={"#i": "id"},
            ExpressionAttributeValues={":i": {"S": row_id}},
        )["Items"]

    def rows(self) -> list[dict[str, Any]]:
        return self.client.scan(TableName=TABLE_NAMES["SendTable"])["Items"]


@pytest.fixture
def table(dynamodb: Any) -> Table:
    return Table(dynamodb)


@pytest.fixture
def invoke(clock: FakeClock) -> Callable[..., dict[str, Any]]:
    """Runs a batch through a dispatcher as Lambda would, with a context on the fake clock."""

    def run(
        dispatcher: Dispatcher, *records: dict[str, Any], timeout: float = 120.0
    ) -> dict[str, Any]:
        context = LocalContext(timeout_seconds=timeout, clock=dispatcher._clock)
        return dict(dispatcher.handle_batch({"Records": list(records)}, context))

    return run


def insert(table: Table, stream_record: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The application inserts a row; returns the stream record that insert produces."""
    return stream_record("INSERT", raw_new=table.put(values))


#: When the history items the bounce tests put were sent.
SENT_AT = "2026-11-30T00:59:00.000Z"


def put_history(
    dynamodb: Any, row_id: str = "order-1", sent_at: str = SENT_AT, **attributes: str
) -> None:
    """A history item, as the dispatcher writes one for a sent row (``delivery_id``,
    ``provider``, ... as plain strings)."""
    item = {"id": row_id, "sent_at": sent_at, "to": "bob@example.com", **attributes}
    dynamodb.put_item(
        TableName=TABLE_NAMES["HistoryTable"], Item={k: {"S": v} for k, v in item.items()}
    )


def get_history(dynamodb: Any, row_id: str = "order-1", sent_at: str = SENT_AT) -> dict[str, Any]:
    return dynamodb.get_item(
        TableName=TABLE_NAMES["HistoryTable"], Key={"id": {"S": row_id}, "sent_at": {"S": sent_at}}
    )["Item"]


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]


def attr(item: dict[str, Any] | None, name: str) -> Any:
    if item is None or name not in item:
        return None
    value = item[name]
    return value.get("S", value.get("N"))


@pytest.fixture
def admin(dynamodb: Any) -> Admin:
    """The operator's queries (CLI, console) over the moto tables."""
    return Admin(
        Store(
            send_table=TABLE_NAMES["SendTable"],
            history_table=TABLE_NAMES["HistoryTable"],
            boto3_client=dynamodb,
            sent_mail_table=TABLE_NAMES["SentMailTable"],
        ),
        SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb),
        TemplateLibrary(table=TABLE_NAMES["TemplatesTable"], boto3_client=dynamodb),
    )


def bounce_ledger(dynamodb: Any, **options: Any) -> Any:
    """The bounce path over the moto tables, on a fake clock (``events``, ``guard``...)."""
    from dispatcher.bounces.ledger import BounceLedger

    return BounceLedger(
        bounce_table=TABLE_NAMES["BounceTable"],
        history_table=TABLE_NAMES["HistoryTable"],
        suppressions=SuppressionList(table=TABLE_NAMES["SuppressionTable"], boto3_client=dynamodb),
        boto3_client=dynamodb,
        clock=FakeClock(),
        **options,
    )
