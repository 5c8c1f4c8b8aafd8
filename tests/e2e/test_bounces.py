"""The bounce loop on the local stack: the sandbox reports bounces to the webhook as
blastengine would, and they reach the history, the suppression list and the next row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningStack, running_stack, wait_for

#: The sandbox's bounce rules for the whole module (a test that changes them puts them back).
RULES = {
    "dead@bounce.example": "HARDERROR",
    "gone@bounce.example": "HARDERROR",
    "@dropped.example": "DROP",
    "full@bounce.example": "SOFTERROR",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    rules = [arg for rule in RULES.items() for arg in ("--sandbox-bounce", "=".join(rule))]
    with running_stack(tmp_path_factory.mktemp("bounces"), *rules) as running:
        yield running


def _suppressed(stack: RunningStack) -> dict[str, Any]:
    items = stack.client.scan(TableName="mail-dispatcher-suppression")["Items"]
    return {i["address"]["S"]: i for i in items}


def _send(stack: RunningStack, row_id: str, to: str) -> None:
    stack.put({"id": row_id, "to": to, "subject": row_id, "text": "x"})


# First in the module: a later test points the sandbox's webhook elsewhere.
def test_first_through_the_stack_a_mail_becomes_delivered_and_another_bounced(
    stack: RunningStack,
) -> None:
    # GIVEN two mails: one the sandbox delivers, one it reports as a hard bounce
    _send(stack, "life-ok", "fine@example.com")
    _send(stack, "life-bad", "gone@bounce.example")

    def status(row_id: str) -> str | None:
        items = stack.history(row_id)
        return items[0].get("delivery_status", {}).get("S") if items else None

    # THEN within seconds the first is delivered (the sweeper read the sandbox's mail log,
    # after its look-up lag) and the second bounced (its webhook)
    wait_for(lambda: status("life-ok") == "delivered", what="the first mail delivered")
    wait_for(
        lambda: status("life-bad") == "bounced",
        what=f"the second mail bounced ({stack.history('life-bad')})",
    )
    # AND each address's history says so
    for address, row_id, status_now in (
        ("fine@example.com", "life-ok", "delivered"),
        ("gone@bounce.example", "life-bad", "bounced"),
    ):
        found = json.loads(stack.cli("history", "--to", address, "--json").stdout)
        assert [(i["id"], i["delivery_status"]) for i in found["history"]] == [(row_id, status_now)]


@pytest.mark.parametrize(
    ("to", "kind"), [("dead@bounce.example", "HARDERROR"), ("someone@dropped.example", "DROP")]
)
def test_a_bounce_reaches_the_history_and_the_next_row_fails_with_no_api_call(
    stack: RunningStack, to: str, kind: str
) -> None:
    # GIVEN a mail the provider accepts, then reports as bounced
    first = f"first-{kind}"
    _send(stack, first, to)
    wait_for(lambda: (stack.history(first) or [{}])[0].get("bounce_type"), what="the bounce")

    # THEN the history item has it, and the address is suppressed with it
    [item] = stack.history(first)
    assert item["bounce_type"] == {"S": kind}
    assert item["bounce_address"] == {"S": to}
    assert _suppressed(stack)[to]["reason"] == {"S": kind}

    # AND the next row to it fails `suppressed`, the provider never asked
    requests = len(stack.mails())
    second = f"second-{kind}"
    _send(stack, second, to)
    wait_for(lambda: (stack.row(second) or {}).get("error_kind"), what="the stamp")
    assert stack.row(second)["error_kind"] == {"S": "suppressed"}
    assert kind in stack.row(second)["last_error"]["S"]
    assert len(stack.mails()) == requests


def test_a_soft_error_is_recorded_only(stack: RunningStack) -> None:
    _send(stack, "soft-1", "full@bounce.example")
    wait_for(lambda: (stack.history("soft-1") or [{}])[0].get("bounce_type"), what="the bounce")

    assert stack.history("soft-1")[0]["bounce_type"] == {"S": "SOFTERROR"}
    assert "full@bounce.example" not in _suppressed(stack)
    # and once blastengine's retry gets it through (the sandbox's log turns it SENT), the
    # sweeper's poll of the mail log moves it on from delayed to delivered
    wait_for(
        lambda: stack.history("soft-1")[0]["delivery_status"] == {"S": "delivered"},
        what="the soft-bounced mail delivered on retry",
    )


def test_the_webhook_refuses_what_is_not_blastengines_and_a_repeat_changes_nothing(
    stack: RunningStack,
) -> None:
    url = stack.ready["webhook_url"]
    event = {
        "event": {
            "type": "HARDERROR",
            "datetime": "2026-11-30T10:00:00+09:00",
            "detail": {"mailaddress": "orphan@example.com", "delivery_id": 999999},
        }
    }
    bounces_before = stack.client.scan(TableName="mail-dispatcher-bounces")["Items"]

    wrong = httpx.post(url.rsplit("/", 1)[0] + "/not-the-secret", json={"events": [event]})
    bad = httpx.post(url, content=b"not json")
    unknown = httpx.post(url, json={"events": [{"event": {**event["event"], "type": "OPEN"}}]})

    assert (wrong.status_code, bad.status_code, unknown.status_code) == (404, 400, 400)
    assert stack.client.scan(TableName="mail-dispatcher-bounces")["Items"] == bounces_before

    # an orphan (no such delivery) is kept, and posting it again changes nothing
    assert httpx.post(url, json={"events": [event]}).status_code == 200
    kept = stack.client.scan(TableName="mail-dispatcher-bounces")["Items"]
    assert httpx.post(url, json={"events": [event]}).status_code == 200
    assert stack.client.scan(TableName="mail-dispatcher-bounces")["Items"] == kept
    assert len(kept) == len(bounces_before) + 1


def test_reconcile_recovers_bounces_whose_webhook_never_came(stack: RunningStack) -> None:
    # GIVEN a bounce the sandbox reports only in its delivery logs (the webhook is off), which
    # show it at once (the hourly catch-up reads mail far older than their lag)
    stack.faults(bounce={**RULES, "lost@bounce.example": "HARDERROR"}, webhook=False, lookup_lag=0)
    try:
        _send(stack, "lost-1", "lost@bounce.example")
        wait_for(lambda: stack.history("lost-1"), what="the send")
        assert "bounce_type" not in stack.history("lost-1")[0]

        # WHEN the delivery logs are caught up
        run = stack.cli("reconcile", "--since", "1h", "--json")
    finally:
        stack.faults(bounce=RULES, webhook=True, lookup_lag=1.0)

    # THEN the bounce reaches the history and the suppression list, as by webhook
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["applied"] >= 1, run.stdout
    assert stack.history("lost-1")[0]["bounce_type"] == {"S": "HARDERROR"}
    assert "lost@bounce.example" in _suppressed(stack)
    # and a second catch-up finds nothing new
    assert json.loads(stack.cli("reconcile", "--since", "1h", "--json").stdout)["applied"] == 0


def test_bounces_lists_them_and_webhook_url_prints_the_ready_lines(stack: RunningStack) -> None:
    listed = json.loads(stack.cli("bounces", "--type", "HARDERROR", "--json").stdout)["bounces"]
    assert listed
    assert {b["type"] for b in listed} == {"HARDERROR"}
    assert stack.cli("webhook-url").stdout.strip() == stack.ready["webhook_url"]
    assert "--since wants a duration" in stack.cli("bounces", "--since", "soon").stderr
