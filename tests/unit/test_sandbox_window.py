"""The sandbox's rate limit in blastengine's shape (fixed windows) and a gateway's (a bucket),
and its headers telling the truth about each."""

from __future__ import annotations

import pytest

from dispatcher.local.sandbox.model import Faults
from dispatcher.local.sandbox.window import FixedWindow, TokenBucketWindow, rate_window


def test_a_fixed_window_takes_r_requests_a_second_and_says_when_it_resets() -> None:
    window = FixedWindow(20)

    # 20 requests in the first 0.9 s of a second pass, the 21st does not
    assert all(window.take(10.0 + i * 0.045) for i in range(20))
    assert window.state(10.9) == (0, pytest.approx(0.1))
    assert window.take(10.95) is False
    # and the next second starts afresh, whatever the one before spent
    assert window.take(11.0) is True
    assert window.state(11.25) == (19, pytest.approx(0.75))


def test_a_fixed_window_lets_a_burst_straddle_its_reset() -> None:
    # what a bucket refuses: 20 at the end of one window and 20 at the start of the next
    window, bucket = FixedWindow(20), TokenBucketWindow(20)
    times = [9.99] * 20 + [10.0] * 20
    assert sum(window.take(t) for t in times) == 40
    assert sum(bucket.take(t) for t in times) == 20


def test_a_bucket_refills_at_its_rate_and_says_when_its_next_token_comes() -> None:
    bucket = TokenBucketWindow(10)
    assert sum(bucket.take(0.0) for _ in range(11)) == 10
    assert bucket.state(0.05) == (0, pytest.approx(0.05))
    assert bucket.take(0.1) is True  # one token refilled in 0.1 s


def test_an_unknown_shape_is_refused_with_the_ones_there_are() -> None:
    with pytest.raises(ValueError, match="fixed, bucket"):
        rate_window("sliding", 10)
    with pytest.raises(ValueError, match="fixed, bucket"):
        Faults.from_json({"window": "sliding"})


def test_blastengines_window_is_the_default() -> None:
    assert Faults().window == "fixed"
