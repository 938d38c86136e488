"""A server-rendered SVG bar chart (no JavaScript, no CDN): errors per day, stacked by severity."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..read.dashboard import DailyCounts
from ..record.presentation import severity_fill

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 1200, 200, 48, 26, 10


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str
    severity: str
    count: int


def axis_scale(peak: int, intervals: int = 4) -> tuple[int, int]:
    """(axis maximum, tick step): a round step (1, 2 or 5 times a power of ten), at most ``intervals`` steps."""
    if peak <= 0:
        return 1, 1
    rough = peak / intervals
    magnitude = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    return math.ceil(peak / step) * step, step


def stacked_bars(data: DailyCounts) -> dict:
    """Geometry for ``templates/audit/_chart.html``."""
    n = max(len(data.days), 1)
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    step = plot_w / n
    peak, tick_step = axis_scale(data.peak)
    bars: list[Bar] = []
    for i, day in enumerate(data.days):
        y = TOP + plot_h
        for severity, counts in data.series.items():
            count = counts[i]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            bars.append(Bar(LEFT + i * step + step * 0.1, y, step * 0.8, h, severity_fill(severity),
                            f"{day.isoformat()}: {count} {severity}", severity, count))
    every = max(1, n // 10)
    labels = [(LEFT + i * step + step / 2, day.strftime("%b %d")) for i, day in enumerate(data.days) if i % every == 0]
    ticks = [(TOP + plot_h - plot_h * v / peak, v) for v in range(0, peak + 1, tick_step)]
    legend = [(severity, severity_fill(severity)) for severity in data.series]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "plot_h": plot_h, "bars": bars,
            "labels": labels, "ticks": ticks, "total": data.total, "days": len(data.days), "legend": legend}
