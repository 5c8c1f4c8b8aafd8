"""The console's flow chart: counts per bucket, and an SVG that says them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from dispatcher.ops.console.chart import Timeline

END = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def test_each_time_falls_in_its_bucket_and_outside_times_in_none() -> None:
    timeline = Timeline.build(
        END,
        timedelta(minutes=1),
        60,
        {
            "sent": [
                "2026-12-03T10:00:00.000Z",  # the first bucket's start
                "2026-12-03T10:59:59.999Z",  # the last bucket
                "2026-12-03T10:59:00.000Z",
                "2026-12-03T11:00:00.000Z",  # the end: outside
                "2026-12-03T09:59:59.999Z",  # before: outside
                "garbage",
            ],
            "failed": ["2026-12-03T10:30:30+00:00"],
        },
    )

    assert timeline.counts["sent"][0] == 1
    assert timeline.counts["sent"][59] == 2
    assert timeline.counts["failed"][30] == 1
    assert timeline.totals() == {"sent": 3, "delivered": 0, "deferred": 0, "failed": 1}


def test_the_svg_stacks_a_bar_per_series_and_names_the_totals() -> None:
    timeline = Timeline.build(
        END,
        timedelta(hours=1),
        24,
        {
            "sent": ["2026-12-03T10:10:00Z"] * 4,
            "delivered": ["2026-12-03T10:10:00Z"] * 3,  # of those sent
            "deferred": ["2026-12-03T10:20:00Z"],
            "failed": ["2026-12-02T12:00:00Z"],
        },
    )

    svg = ElementTree.fromstring(timeline.svg("Last day <per hour>"))  # noqa: S314  (our own)

    assert svg.get("aria-label") == (
        "Last day <per hour>: 4 sent, 3 delivered, 1 deferred, 1 failed"
    )
    rects = svg.findall(f".//{SVG}rect")
    assert sorted(r.get("class") for r in rects) == [
        "deferred", "delivered", "failed", "undelivered",
    ]  # fmt: skip
    layer = {r.get("class"): r for r in rects if r.get("class") != "failed"}
    # one bar, bottom up: the delivered part of sent, the rest of sent, then deferred
    for lower, upper in (("delivered", "undelivered"), ("undelivered", "deferred")):
        top = float(layer[upper].get("y")) + float(layer[upper].get("height"))
        assert abs(top - float(layer[lower].get("y"))) < 0.01
    heights = {name: float(r.get("height")) for name, r in layer.items()}
    assert abs(heights["delivered"] - 3 * heights["undelivered"]) < 0.2
    assert abs(heights["deferred"] - heights["undelivered"]) < 0.01
    tips = [t.text for t in svg.iter(f"{SVG}title")]
    assert "10:00 UTC: 4 sent (3 delivered), 1 deferred, 0 failed" in tips


def test_an_empty_timeline_draws_no_bars() -> None:
    svg = Timeline.build(END, timedelta(minutes=1), 60, {}).svg("Last hour")
    assert "<rect" not in svg
    assert 'aria-label="Last hour: 0 sent, 0 delivered, 0 deferred, 0 failed"' in svg
