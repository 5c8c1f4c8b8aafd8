from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.providers._http import parse_retry_after

NOW = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("Tue, 24 Nov 2026 09:00:30 GMT", 30.0),
        ("Tue, 24 Nov 2026 08:59:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected
