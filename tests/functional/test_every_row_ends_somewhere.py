"""Property: any item DynamoDB can store, of every attribute type and shape, put in the send
table and delivered as Lambda delivers its record, ends sent (in the history) or stamped
with a reason: never neither."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import image, row
from tests.functional.conftest import attr, failed_ids
from tests.strategies import as_stream_value, items, producer_rows

_ids = itertools.count()
_rows = st.one_of(
    items,  # anything storable: wrong types, sets, binaries, nested maps
    producer_rows().map(image),  # what producers write, tricky characters and all
    st.just(image(row("x"))),  # and plain good rows
)


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(_rows)
def test_every_storable_row_is_sent_or_stamped_never_neither(
    dispatcher, table, stream_record, invoke, blastengine, item: dict[str, Any]
) -> None:
    row_id = f"prop-{next(_ids)}"
    stored = {**item, "id": {"S": row_id}}
    stored.pop("status", None)  # a row as an application inserts it
    table.put_raw(stored)
    record = stream_record("INSERT", raw_new={k: as_stream_value(v) for k, v in stored.items()})

    response = invoke(dispatcher, record)

    assert failed_ids(response) == [], "the record failed: the row would wait unstamped"
    current = table.get(row_id)
    if current is None:
        assert table.history(row_id), "the row is gone but not in the history"
    else:
        assert attr(current, "status") in {"failed", "deferred", "scheduled"}, current
        if attr(current, "status") != "scheduled":
            assert attr(current, "last_error"), current
