"""A server-rendered SVG bar chart (no JavaScript, no CDN): errors per day, stacked by severity."""

from __future__ import annotations

from dataclasses import dataclass

from .dashboard import DailyCounts
from .enums import SEVERITY_COLOURS, ErrorSeverity

#: Fill colours for the severities (the legend repeats them in words).
FILLS = {"red": "#dc3545", "orange": "#fd7e14", "yellow": "#ffc107"}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 900, 220, 40, 28, 10


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


def stacked_bars(data: DailyCounts) -> dict:
    """Geometry for ``templates/audit/_chart.html``."""
    n = max(len(data.days), 1)
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    step = plot_w / n
    peak = max(data.peak, 1)
    bars: list[Bar] = []
    for i, day in enumerate(data.days):
        y = TOP + plot_h
        for severity, counts in data.series.items():
            count = counts[i]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            colour = SEVERITY_COLOURS[ErrorSeverity(severity)]
            bars.append(Bar(LEFT + i * step + step * 0.1, y, step * 0.8, h, FILLS[colour],
                            f"{day.isoformat()}: {count} {severity}"))
    every = max(1, n // 10)
    labels = [(LEFT + i * step + step / 2, day.strftime("%b %d")) for i, day in enumerate(data.days) if i % every == 0]
    ticks = [(TOP + plot_h - plot_h * v / peak, v) for v in sorted({0, peak // 2, peak})]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "plot_h": plot_h, "bars": bars,
            "labels": labels, "ticks": ticks, "total": data.total, "legend": [(s, FILLS[SEVERITY_COLOURS[ErrorSeverity(s)]])
                                                                            for s in data.series]}
