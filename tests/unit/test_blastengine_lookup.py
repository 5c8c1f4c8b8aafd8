"""Asking blastengine whether it took a mail: the results to the address around the window,
then each candidate's stored content against what was sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from dispatcher.model.unsettled import Unsettled, content_digest
from dispatcher.providers.blastengine.client import BlastengineClient
from dispatcher.providers.blastengine.credentials import Credentials
from dispatcher.providers.blastengine.lookup import MAX_CANDIDATES, BlastengineLookup
from dispatcher.providers.errors import TransientError
from tests.conftest import API_KEY, BASE_URL, LOGIN_ID
from tests.fakes import EPOCH

RESULTS = BASE_URL + "/logs/mails/results"
SENT = Unsettled(
    provider="blastengine",
    to="alice@example.com",
    opened_at=EPOCH,
    closed_at=EPOCH + timedelta(seconds=10),
    digests=(content_digest("Hello", "Hi there", None),),
    content_hash="h",
    reason="no answer",
)


def _result(delivery_id: int, seconds: float, email: str = "alice@example.com") -> dict[str, Any]:
    return {
        "maillog_id": delivery_id,
        "delivery_id": delivery_id,
        "email": email,
        "status": "SENT",
        "created_time": (EPOCH + timedelta(seconds=seconds)).isoformat(),
    }


def _detail(router: respx.MockRouter, delivery_id: int, subject: str) -> respx.Route:
    return router.get(f"{BASE_URL}/deliveries/{delivery_id}").mock(
        return_value=httpx.Response(
            200,
            json={"delivery_id": delivery_id, "subject": subject, "text_part": "Hi there"},
        )
    )


@pytest.fixture
def lookup() -> BlastengineLookup:
    client = BlastengineClient(
        base_url=BASE_URL, credentials=lambda: Credentials(LOGIN_ID, API_KEY)
    )
    return BlastengineLookup(client)


def test_the_candidate_closest_to_the_window_is_compared_first_and_found(
    lookup: BlastengineLookup,
) -> None:
    slots: list[int] = []
    with respx.mock(assert_all_called=False) as router:
        # GIVEN three mails to the address: one well before, one inside the window, one after
        results = router.get(RESULTS).mock(
            return_value=httpx.Response(
                200, json={"data": [_result(1, -8), _result(2, 4), _result(3, 15)]}
            )
        )
        early, inside, late = (_detail(router, n, "Hello") for n in (1, 2, 3))

        # WHEN the unanswered send is looked up
        found = lookup.find(SENT, timeout=5, before_request=lambda: slots.append(1))

    # THEN the one inside the window is compared first and matches; nothing else is asked
    assert found is not None
    assert found.delivery_id == "2"
    assert found.taken_at == EPOCH + timedelta(seconds=4)
    assert (early.call_count, inside.call_count, late.call_count) == (0, 1, 0)
    assert len(slots) == 2  # every request took a rate-limit slot
    query = results.calls.last.request.url.params
    assert query["email"] == "alice@example.com"
    assert query["delivery_type[]"] == "TRANSACTION"
    assert query["delivery_start"] < EPOCH.isoformat() < query["delivery_end"]


def test_nothing_matching_is_none_and_far_or_other_results_are_not_candidates(
    lookup: BlastengineLookup,
) -> None:
    with respx.mock(assert_all_called=False) as router:
        # GIVEN a mail with other content in the window, one far outside, one to someone else
        router.get(RESULTS).mock(
            return_value=httpx.Response(
                200,
                json={
                    "data": [
                        _result(1, 5),
                        _result(2, 90),
                        _result(3, 5, email="bob@example.com"),
                    ]
                },
            )
        )
        other = _detail(router, 1, "Another subject")
        far = _detail(router, 2, "Hello")
        bob = _detail(router, 3, "Hello")

        # WHEN it is looked up, twice
        first = lookup.find(SENT, timeout=5, before_request=lambda: None)
        second = lookup.find(SENT, timeout=5, before_request=lambda: None)

    # THEN not found; only the candidate in the window was read, once (its digest is kept)
    assert first is None
    assert second is None
    assert (other.call_count, far.call_count, bob.call_count) == (1, 0, 0)


def test_more_candidates_than_the_cap_is_a_failed_lookup_not_a_guess(
    lookup: BlastengineLookup,
) -> None:
    crowd = [_result(n, 5) for n in range(1, MAX_CANDIDATES + 2)]
    pages = [crowd[:1000], crowd[1000:]]  # the API's pages, read after the last maillog_id
    with respx.mock(assert_all_called=False) as router:
        router.get(RESULTS).mock(
            side_effect=[httpx.Response(200, json={"data": page}) for page in pages]
        )
        with pytest.raises(TransientError, match=f"more than {MAX_CANDIDATES} to compare"):
            lookup.find(SENT, timeout=5, before_request=lambda: None)


def test_an_error_answer_from_the_results_is_a_failed_lookup(lookup: BlastengineLookup) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.get(RESULTS).mock(return_value=httpx.Response(503, json={}))
        with pytest.raises(TransientError):
            lookup.find(SENT, timeout=5, before_request=lambda: None)
