"""No exception from building or sending a message leaves a row without a status: what the
row's content causes fails it `invalid`, what the deployment's client causes fails it
`config`, each naming the exception and counted; only infrastructure fails the record."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.model.message import Message
from dispatcher.providers.base import Accepted
from dispatcher.support.observability import metrics
from tests.conftest import row
from tests.functional.conftest import attr, failed_ids, insert


class Surprising:
    """A provider client that raises what it does not map onto the error tree."""

    name = "surprising"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def send(self, message: Message, *, timeout: float) -> Accepted:
        self.calls += 1
        raise self.error


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Any:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def test_an_unmapped_error_from_the_client_fails_the_row_config_naming_it(
    make_dispatcher, table, stream_record, invoke
) -> None:
    # GIVEN a client that raises something its provider module never maps
    client = Surprising(RuntimeError("the library changed under us"))
    dispatcher = make_dispatcher(provider=client)
    record = insert(table, stream_record, row("r1"))

    # WHEN the row is handled
    response = invoke(dispatcher, record)

    # THEN the record succeeds as a batch item and the row is failed `config`, saying what
    assert failed_ids(response) == []
    current = table.get("r1")
    assert attr(current, "status") == "failed"
    assert attr(current, "error_kind") == "config"
    assert "RuntimeError: the library changed under us" in attr(current, "last_error")
    assert client.calls == 1  # never retried: it is not transient
    assert metrics.metric_set["ProviderClientErrors"]["Value"] == [1.0]


def test_a_request_that_cannot_be_built_fails_the_row_invalid_naming_the_exception(
    dispatcher, table, stream_record, invoke, blastengine, monkeypatch
) -> None:
    # GIVEN content the request builder chokes on (stands for any encoder's surprise)
    def choke(message: Message) -> Any:
        raise UnicodeEncodeError("iso2022_jp", "😀", 0, 1, "illegal multibyte sequence")

    monkeypatch.setattr("dispatcher.providers.blastengine.client.build_request", choke)
    record = insert(table, stream_record, row("r1"))

    response = invoke(dispatcher, record)

    # THEN nothing was sent and the row is failed `invalid` with the exception's words
    assert failed_ids(response) == []
    assert blastengine.payloads == []
    current = table.get("r1")
    assert attr(current, "error_kind") == "invalid"
    assert "UnicodeEncodeError" in attr(current, "last_error")
    assert metrics.metric_set["RequestNotBuilt"]["Value"] == [1.0]
