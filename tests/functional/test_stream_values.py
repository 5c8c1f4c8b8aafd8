"""A stream record's image and the row read from the table are compared like with like.

Lambda's event carries binary values base64-encoded; a read of the table gives bytes. Sets
come in any order, numbers in any of their string forms. A row whose record and table read
differ only in that form must be handled (sent, or stamped with a reason), never skipped as
"edited since" waiting for a record that never comes.
"""

from __future__ import annotations

import pytest

from tests.conftest import image, row
from tests.functional.conftest import attr, failed_ids
from tests.strategies import as_stream_value

CASES = [
    ("binary-subject", {"subject": {"B": b"\x00\x01hi"}}, "invalid", "subject"),
    ("binary-set-cc", {"cc": {"BS": [b"a", b"b"]}}, "invalid", "cc"),
    ("string-set-bcc", {"bcc": {"SS": ["x@example.com", "y@example.com"]}}, "invalid", "bcc"),
    ("binary-in-map", {"insert_code": {"M": {"name": {"B": b"\xff"}}}}, "invalid", "insert_code"),
    (
        "binary-in-list",
        {"attachments": {"L": [{"M": {"key": {"B": b"k"}}}]}},
        "invalid",
        "attachments",
    ),
    ("number-forms", {"revision": {"N": "1.50"}}, "sent", None),
    ("number-set", {"insert_code": {"NS": ["10", "2"]}}, "invalid", "insert_code"),
]


@pytest.mark.parametrize(("case", "extra", "ends", "named"), CASES, ids=[c[0] for c in CASES])
def test_each_attribute_type_ends_sent_or_stamped_never_skipped(
    dispatcher, table, stream_record, invoke, blastengine, case, extra, ends, named
) -> None:
    # GIVEN a row holding one attribute of an unusual type, in the table as DynamoDB keeps it
    item = {**image(row(case)), **extra}
    table.put_raw(item)
    # and its INSERT record as Lambda delivers it
    record = stream_record("INSERT", raw_new={k: as_stream_value(v) for k, v in item.items()})

    # WHEN the dispatcher handles the record
    response = invoke(dispatcher, record)

    # THEN the row is sent, or kept with a reason naming the attribute: never left unstamped
    assert failed_ids(response) == []
    current = table.get(case)
    if ends == "sent":
        assert current is None
        assert [p["subject"] for p in blastengine.payloads] == ["Hello"]
    else:
        assert attr(current, "status") == "failed"
        assert attr(current, "error_kind") == ends
        assert f"{named}:" in attr(current, "last_error")
