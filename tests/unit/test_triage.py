from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.flow.triage import Reason, triage
from dispatcher.model.row import BOOKKEEPING_ATTRIBUTES, REQUEST_ATTRIBUTES, WAITING_STATUSES
from tests.conftest import image, row

BASE = image(row("r1"))
FAILED = {
    **BASE,
    "status": {"S": "failed"},
    "attempts": {"N": "1"},
    "error_kind": {"S": "rejected"},
    "last_error": {"S": "HTTP 400"},
}


@pytest.mark.parametrize(
    ("event_name", "old", "new", "send", "reason"),
    [
        pytest.param("INSERT", None, BASE, True, Reason.INSERTED, id="insert-sends"),
        pytest.param(
            "MODIFY",
            FAILED,
            {**FAILED, "to": {"S": "bob@example.com"}},
            True,
            Reason.REQUEST_CHANGED,
            id="edited-failed-row-sends",
        ),
        pytest.param(
            "MODIFY",
            FAILED,
            {**FAILED, "revision": {"N": "2"}},
            True,
            Reason.REQUEST_CHANGED,
            id="revision-bump-sends",
        ),
        pytest.param("MODIFY", BASE, FAILED, False, Reason.ECHO, id="own-failure-echo-skips"),
        pytest.param(
            "MODIFY",
            BASE,
            {**BASE, "status": {"S": "deferred"}},
            False,
            Reason.ECHO,
            id="own-deferral-echo-skips",
        ),
        pytest.param(
            "MODIFY",
            BASE,
            {**BASE, "status": {"S": "scheduled"}},
            False,
            Reason.ECHO,
            id="own-schedule-echo-skips",
        ),
        pytest.param(
            "MODIFY",
            FAILED,
            {k: v for k, v in FAILED.items() if k != "status"},
            True,
            Reason.STATUS_REFIRED,
            id="status-removed-sends",
        ),
        pytest.param(
            "MODIFY",
            FAILED,
            {**FAILED, "status": {"S": "retry"}},
            True,
            Reason.STATUS_REFIRED,
            id="status-set-to-other-sends",
        ),
        pytest.param(
            "MODIFY",
            BASE,
            {**BASE, "note": {"S": "x"}},
            False,
            Reason.NO_CHANGE,
            id="unrelated-attribute-skips",
        ),
        pytest.param("REMOVE", BASE, None, False, Reason.REMOVED, id="remove-skips"),
    ],
)
def test_each_row_of_the_triage_table(
    event_name: str, old: dict | None, new: dict | None, send: bool, reason: Reason
) -> None:
    decision = triage(event_name, old, new)
    assert (decision.send, decision.reason) == (send, reason)


attribute_values = st.one_of(
    st.text(max_size=20).map(lambda s: {"S": s}),
    st.integers(-5, 5).map(lambda n: {"N": str(n)}),
    st.lists(st.text(max_size=5).map(lambda s: {"S": s}), max_size=3).map(lambda v: {"L": v}),
)
images = st.dictionaries(
    st.sampled_from(sorted(REQUEST_ATTRIBUTES | BOOKKEEPING_ATTRIBUTES | {"note"})),
    attribute_values,
).map(lambda d: {"id": {"S": "r1"}, **d})


def _with_status(img: dict[str, Any], status: str | None) -> dict[str, Any]:
    out = {k: v for k, v in img.items() if k != "status"}
    if status is not None:
        out["status"] = {"S": status}
    return out


@given(
    old=images,
    bookkeeping=st.dictionaries(st.sampled_from(sorted(BOOKKEEPING_ATTRIBUTES)), attribute_values),
    status=st.sampled_from(sorted(WAITING_STATUSES)),
)
def test_no_bookkeeping_only_modify_with_a_waiting_status_is_ever_a_send(
    old: dict, bookkeeping: dict, status: str
) -> None:
    # GIVEN any row, and the same row after the dispatcher stamped bookkeeping on it
    new = _with_status({**old, **bookkeeping}, status)

    # THEN triage never sends it: the dispatcher cannot re-trigger itself
    assert triage("MODIFY", old, new).send is False


@given(
    old=images,
    attribute=st.sampled_from(sorted(REQUEST_ATTRIBUTES)),
    value=attribute_values,
    status=st.sampled_from([*sorted(WAITING_STATUSES), None]),
)
def test_every_request_attribute_change_is_a_send(
    old: dict, attribute: str, value: dict, status: str | None
) -> None:
    # GIVEN any row, whatever its status, and one request attribute changed (or added)
    old = _with_status(old, status)
    new = {**old, attribute: value}
    if old.get(attribute) == value:
        new.pop(attribute)  # removing it is a change too

    # THEN it is sent
    assert triage("MODIFY", old, new).send is True


@given(new=images)
def test_insert_always_sends_and_remove_never_does(new: dict) -> None:
    assert triage("INSERT", None, new).send is True
    assert triage("REMOVE", new, None).send is False
