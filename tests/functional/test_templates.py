"""Rows that name a template: rendered before a provider is chosen, sent as rendered, and a
template's problem is the row's, failed ``template`` with a reason naming the template,
its version and the variable or line."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.ops.template_source import source_problems, variables_of
from dispatcher.templates.library import SaveConflictError, TemplateLibrary
from dispatcher.templates.version import TemplateVersion
from tests.conftest import TABLE_NAMES, row
from tests.functional.conftest import insert

ORDER = TemplateVersion(
    name="order",
    version=0,
    subject="Order {{ order.id }} confirmed",
    text="\n".join(
        ["Hello {{ name }},", "{% for item in items %}- {{ item.title }} x{{ item.qty }}", ""]
    )
    + "{% endfor %}",
    html="<p>Hello {{ name }}</p>",
    from_email="shop@example.com",
    from_name="The Shop",
    required=("name", "order"),
)
VARS = {"name": "<Mio>", "order": {"id": "A-7"}, "items": [{"title": "Tea", "qty": 2}]}


@pytest.fixture
def library(dynamodb: Any) -> TemplateLibrary:
    return TemplateLibrary(table=TABLE_NAMES["TemplatesTable"], boto3_client=dynamodb)


def save(library: TemplateLibrary, draft: TemplateVersion) -> TemplateVersion:
    assert source_problems(draft) == []
    current = library.current(draft.name, draft.language)
    draft = TemplateVersion(**{**draft.__dict__, "variables": variables_of(draft)})
    return library.save(draft, expected=current.version if current else None)


def template_row(row_id: str, **values: Any) -> dict[str, Any]:
    return row(
        row_id, **{"subject": None, "text": None, "template": "order", "vars": VARS, **values}
    )


def test_a_template_row_is_sent_as_rendered_and_the_history_names_the_version(
    make_dispatcher, library, table, stream_record, invoke, blastengine
) -> None:
    # GIVEN a saved template and a row naming it, with its vars
    save(library, ORDER)
    dispatcher = make_dispatcher(sent_mail_table_name=TABLE_NAMES["SentMailTable"])

    invoke(dispatcher, insert(table, stream_record, template_row("t-1")))

    # THEN the provider got the rendered mail: HTML escaped, text not, the template's sender
    [(_, _, sent)] = blastengine.accepted
    assert sent["subject"] == "Order A-7 confirmed"
    assert sent["text_part"] == "Hello <Mio>,\n- Tea x2\n"
    assert sent["html_part"] == "<p>Hello &lt;Mio&gt;</p>"
    assert sent["from"] == {"email": "shop@example.com", "name": "The Shop"}
    assert "insert_code" not in sent
    # AND the history names the version, and the mail as sent is the rendered one
    [item] = table.history("t-1")
    assert item["template"] == {"S": "order@1"}
    kept = dispatcher.store.sent_mail("t-1", item["sent_at"]["S"])
    assert kept is not None
    assert kept["text"] == "Hello <Mio>,\n- Tea x2\n"
    assert table.get("t-1") is None


def test_the_rows_own_subject_and_sender_win_over_the_templates(
    dispatcher, library, table, stream_record, invoke, blastengine
) -> None:
    save(library, ORDER)
    values = template_row("t-2", subject="Your order", **{"from": "me@example.com"})
    invoke(dispatcher, insert(table, stream_record, values))
    [(_, _, sent)] = blastengine.accepted
    assert sent["subject"] == "Your order"
    assert sent["from"]["email"] == "me@example.com"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"vars": {"order": {"id": "A"}}}, "template order@1: vars: missing 'name' (required)"),
        ({"template": "nope"}, "template nope: no such template or version"),
        ({"template": "order@9"}, "template order@9: no such template or version"),
        ({"vars": {"name": "x", "order": {}}}, "template order@1: subject line 1:"),
    ],
)
def test_a_template_problem_fails_the_row_template_naming_it_and_nothing_is_sent(
    dispatcher, library, table, stream_record, invoke, blastengine, values, reason
) -> None:
    save(library, ORDER)
    invoke(dispatcher, insert(table, stream_record, template_row("t-3", **values)))

    kept = table.get("t-3")
    assert kept is not None
    assert (kept["status"]["S"], kept["error_kind"]["S"]) == ("failed", "template")
    assert kept["last_error"]["S"].startswith(reason), kept["last_error"]["S"]
    assert blastengine.accepted == []


def test_a_fixed_template_and_a_refire_send_the_row_with_the_new_version(
    dispatcher, library, table, stream_record, invoke, blastengine
) -> None:
    # GIVEN a template whose text names a variable rows do not give: the row fails
    save(library, TemplateVersion(**{**ORDER.__dict__, "text": "Hi {{ nickname }}"}))
    invoke(dispatcher, insert(table, stream_record, template_row("t-4")))
    assert "'nickname' is undefined" in table.get("t-4")["last_error"]["S"]
    # WHEN the template is fixed (version 2) and the row re-fired
    save(library, ORDER)
    refired = table.update("t-4", revision=1)
    invoke(dispatcher, stream_record("MODIFY", raw_new=refired, old={"id": "t-4"}))
    # THEN it is sent, rendered with version 2
    [(_, _, sent)] = blastengine.accepted
    assert sent["text_part"].startswith("Hello <Mio>")
    assert table.history("t-4")[0]["template"] == {"S": "order@2"}


@pytest.mark.parametrize(
    ("values", "attribute"),
    [
        ({"text": "mine"}, "text: a row that names a template takes its parts from it"),
        ({"insert_code": {"a": "b"}}, "insert_code: a row that names a template"),
        ({"vars": "not a map"}, "vars: must be a map"),
        ({"vars": {"a": {"b": {"c": {"d": {"e": {"f": "deep"}}}}}}}, "vars: nests 6 deep"),
        ({"template": "Bad Name"}, "template: 'Bad Name' is not a template name"),
        ({"language": "japanese"}, "language: 'japanese' is not a language tag"),
    ],
)
def test_a_template_rows_own_mistakes_are_invalid_naming_the_attribute(
    dispatcher, library, table, stream_record, invoke, blastengine, values, attribute
) -> None:
    save(library, ORDER)
    invoke(dispatcher, insert(table, stream_record, template_row("t-5", **values)))
    kept = table.get("t-5")
    assert kept["error_kind"] == {"S": "invalid"}
    assert attribute in kept["last_error"]["S"]
    assert blastengine.accepted == []


def test_a_language_variant_is_used_and_an_unknown_language_falls_back_to_the_default(
    dispatcher, library, table, stream_record, invoke, blastengine
) -> None:
    save(library, ORDER)
    japanese = TemplateVersion(
        **{**ORDER.__dict__, "language": "ja", "subject": "ご注文 {{ order.id }}"}
    )
    save(library, japanese)
    invoke(
        dispatcher,
        insert(table, stream_record, template_row("t-ja", language="ja")),
        insert(table, stream_record, template_row("t-fr", language="fr")),
    )
    subjects = {sent["subject"] for _, _, sent in blastengine.accepted}
    assert subjects == {"ご注文 A-7", "Order A-7 confirmed"}
    assert table.history("t-ja")[0]["template"] == {"S": "order@2"}
    assert table.history("t-fr")[0]["template"] == {"S": "order@1"}


def test_a_pinned_version_is_rendered_whatever_is_current(
    dispatcher, library, table, stream_record, invoke, blastengine
) -> None:
    save(library, ORDER)
    save(library, TemplateVersion(**{**ORDER.__dict__, "subject": "Changed {{ order.id }}"}))
    invoke(dispatcher, insert(table, stream_record, template_row("t-pin", template="order@1")))
    [(_, _, sent)] = blastengine.accepted
    assert sent["subject"] == "Order A-7 confirmed"


def test_a_batch_of_rows_of_one_template_reads_it_once(
    dispatcher, library, table, stream_record, invoke, blastengine, dynamodb
) -> None:
    save(library, ORDER)
    reads: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == TABLE_NAMES["TemplatesTable"]:
            reads.append("GetItem")

    dynamodb.meta.events.register("provide-client-params.dynamodb.GetItem", count)
    records = [insert(table, stream_record, template_row(f"t-b{n}")) for n in range(20)]
    invoke(dispatcher, *records)
    assert len(blastengine.accepted) == 20
    assert reads == ["GetItem"]


def test_two_saves_from_the_same_version_never_lose_an_edit_silently(library) -> None:
    first = save(library, ORDER)
    # two people open version 1; the first saves version 2
    library.save(ORDER, expected=first.version)
    # the second, still on version 1, is told, and nothing is written
    with pytest.raises(SaveConflictError, match="saved meanwhile"):
        library.save(ORDER, expected=first.version)
    assert [v.version for v in library.versions("order")] == [1, 2]
