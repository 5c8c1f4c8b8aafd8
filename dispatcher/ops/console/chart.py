"""The overview's flow chart: sent (and, of it, delivered), deferred and failed per minute
(last hour) and per hour (last day), drawn on the server as SVG, so the console stays free
of scripts.

It reads nothing of its own: the sent times come from the overview's cached history read
(:meth:`~dispatcher.ops.admin.Admin.sent_since`), the failed and deferred ones from the stamped
index the overview's counts already page through (``failed_at`` of the rows still failed or
deferred: a deferred row sent since is counted as sent, where it went). Delivered mail is
counted by when it was sent, as part of that bar's sent: the bar's lower, darker part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from dispatcher.support.clock import parse_iso

__all__ = ["LAYERS", "SERIES", "Timeline"]

#: Series counted, each by its own times; ``delivered`` is a part of ``sent``.
SERIES = ("sent", "delivered", "deferred", "failed")
#: What is drawn, in stacking order (bottom first): sent splits into its delivered part and
#: the rest (accepted, delayed or bounced), so every bar's height is what was sent and stamped.
LAYERS = (
    ("delivered", "#1f7a45"),
    ("undelivered", "#8fd1a8"),
    ("deferred", "#d69a1e"),
    ("failed", "#c8443a"),
)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 150, 34, 20, 8


@dataclass(frozen=True)
class Timeline:
    """Counts per bucket of ``step``, the last bucket ending at ``end``."""

    end: datetime
    step: timedelta
    counts: dict[str, list[int]]

    @classmethod
    def build(
        cls,
        end: datetime,
        step: timedelta,
        buckets: int,
        times: Mapping[str, Iterable[str]],
    ) -> Timeline:
        start = end - step * buckets
        counts = {name: [0] * buckets for name in SERIES}
        for name, stamps in times.items():
            for stamp in stamps:
                when = parse_iso(stamp)
                if when is None or not start <= when < end:
                    continue
                counts[name][int((when - start) / step)] += 1
        return cls(end, step, counts)

    @property
    def buckets(self) -> int:
        return len(self.counts["sent"])

    def totals(self) -> dict[str, int]:
        return {name: sum(values) for name, values in self.counts.items()}

    def _layer(self, name: str, i: int) -> int:
        if name == "undelivered":
            return self.counts["sent"][i] - self.counts["delivered"][i]
        return self.counts[name][i]

    def _tip(self, i: int) -> str:
        c = {name: values[i] for name, values in self.counts.items()}
        sent = f"{c['sent']} sent ({c['delivered']} delivered)"
        return f"{sent}, {c['deferred']} deferred, {c['failed']} failed"

    def svg(self, title: str) -> str:
        """A stacked bar per bucket; a ``<title>`` per bar says its counts (hover)."""
        n = self.buckets
        peak = max((sum(self._layer(name, i) for name, _ in LAYERS) for i in range(n)), default=0)
        scale = max(peak, 1)
        plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
        slot = plot_w / n
        bar = max(1.0, slot * 0.8)
        totals = self.totals()
        summary = ", ".join(f"{totals[name]} {name}" for name in SERIES)
        parts = [
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(title)}: {summary}" xmlns="http://www.w3.org/2000/svg">',
            f"<title>{escape(title)}</title>",
            f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}" '
            'stroke="#c9ccd6"/>',
            f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" class="axis">{peak}</text>',
            f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" class="axis">0</text>',
        ]
        start = self.end - self.step * n
        for i in range(n):
            x = LEFT + i * slot + (slot - bar) / 2
            y = float(TOP + plot_h)
            label = (start + self.step * i).strftime("%H:%M")
            parts.append(f"<g><title>{label} UTC: {self._tip(i)}</title>")
            for name, colour in LAYERS:
                value = self._layer(name, i)
                if not value:
                    continue
                h = value / scale * plot_h
                y -= h
                parts.append(
                    f'<rect class="{name}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>'
                )
            parts.append("</g>")
        for i in (0, n // 2, n):
            when = (start + self.step * i).strftime("%H:%M")
            anchor = "start" if i == 0 else "end" if i == n else "middle"
            parts.append(
                f'<text x="{LEFT + i * slot:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}" '
                f'class="axis">{when}</text>'
            )
        parts.append("</svg>")
        return "".join(parts)
