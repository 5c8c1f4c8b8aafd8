"""dispatcher.producer: a row checked by the dispatcher's own parser, inserted only once."""

from __future__ import annotations

from typing import Any

from dispatcher.producer import check_row, insert_row
from tests.conftest import TABLE_NAMES

SEND = TABLE_NAMES["SendTable"]
ROW = {"id": "order-7", "to": "hanako@example.com", "subject": "Your order", "text": "Thanks."}


def test_a_good_row_is_inserted_and_its_id_returned(dynamodb: Any, table: Any) -> None:
    result = insert_row(SEND, {**ROW, "cc": ["c@example.com"], "revision": 1}, client=dynamodb)

    assert result.ok
    assert result.id == "order-7"
    item = table.get("order-7")
    assert item["to"] == {"S": "hanako@example.com"}
    assert item["cc"] == {"L": [{"S": "c@example.com"}]}


def test_a_bad_row_returns_the_dispatchers_own_words_and_writes_nothing(
    dynamodb: Any, table: Any
) -> None:
    result = insert_row(SEND, {**ROW, "to": "hanako@", "sendafter": "soon"}, client=dynamodb)

    assert not result.ok
    assert result.id is None
    assert any(p.startswith("to: 'hanako@' is not a valid address") for p in result.problems)
    assert "sendafter: not a request attribute (a typo?)" in result.problems
    assert table.get("order-7") is None


def test_an_id_already_queued_is_a_problem_never_an_overwrite(dynamodb: Any, table: Any) -> None:
    assert insert_row(SEND, ROW, client=dynamodb).ok

    again = insert_row(SEND, {**ROW, "subject": "Changed"}, client=dynamodb)

    assert again.problems == ["id: a row 'order-7' is already in the send table"]
    assert table.get("order-7")["subject"] == {"S": "Your order"}


def test_check_row_needs_an_id() -> None:
    assert check_row({"to": "a@example.com"}) == ["id: missing: every row needs a string id"]
    assert check_row(ROW) == []


def test_check_row_renders_a_template_row_against_the_templates_it_is_given(
    dynamodb: Any,
) -> None:
    from dispatcher.templates.library import TemplateLibrary
    from dispatcher.templates.version import TemplateVersion

    order = TemplateVersion(
        "order", 1, subject="Order {{ id }}", text="Hi {{ name }}", required=("id", "name")
    )
    row = {"id": "t-1", "to": "a@example.com", "template": "order", "vars": {"id": "A-7"}}
    # a producer's test, with the versions it expects: the missing variable shows
    assert check_row(row, templates=[order]) == [
        "template order@1: vars: missing 'name' (required)"
    ]
    assert check_row({**row, "vars": {"id": "A-7", "name": "Mio"}}, templates=[order]) == []
    # without templates, the row's own attributes are still checked; the parts left alone
    assert check_row(row) == []
    assert check_row({**row, "text": "mine"})[0].startswith("text: a row that names a template")
    assert check_row({**row, "to": "nope"})[0].startswith("to:")
    # against the stack's table, as deployed
    library = TemplateLibrary(table=TABLE_NAMES["TemplatesTable"], boto3_client=dynamodb)
    assert check_row(row, templates=library) == ["template order: no such template or version"]
