"""Server-rendered SVG bar charts (no JavaScript, no CDN): errors per day, stacked by severity, on the error
dashboard; events per time bucket, stacked by status, above the viewer's list."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, timedelta

from ..read.dashboard import DailyCounts
from ..read.histogram import STATUSES, Bucket, Histogram
from ..record.presentation import severity_fill, status_fill

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 1200, 200, 48, 26, 10
HIST_HEIGHT = 150


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str
    series: str  #: the severity or the status the bar counts
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


@dataclass
class Column:
    """One bucket of the histogram: its stacked bars, where clicking it narrows the range, and its label."""

    x: float
    width: float
    bars: list[Bar]
    bucket: Bucket
    label: str


def _span_label(bucket: Bucket, tz) -> str:
    start, end = bucket.start.astimezone(tz), bucket.end.astimezone(tz)
    fmt = "%b %d %H:%M" if (bucket.end - bucket.start) < timedelta(days=1) or start.time() != end.time() else "%b %d"
    return f"{start.strftime(fmt)} – {end.strftime(fmt)}"


def histogram_bars(hist: Histogram, tz=UTC) -> dict:
    """Geometry for the histogram above the viewer's list (``templates/audit/_histogram.html``): one column
    per bucket, stacked by status (SUCCESS at the bottom), in ``tz`` for its labels."""
    n = max(len(hist.buckets), 1)
    plot_w, plot_h = WIDTH - LEFT - 10, HIST_HEIGHT - BOTTOM - TOP
    step = plot_w / n
    peak, tick_step = axis_scale(hist.peak)
    columns = []
    for i, bucket in enumerate(hist.buckets):
        y, bars, label = TOP + plot_h, [], _span_label(bucket, tz)
        for status in STATUSES:
            count = bucket.counts[status]
            if count:
                h = plot_h * count / peak
                y -= h
                bars.append(Bar(LEFT + i * step + step * 0.08, y, step * 0.84, h, status_fill(status),
                                f"{count:,} {status}", status, count))
        columns.append(Column(LEFT + i * step, step, bars, bucket, label))
    every = max(1, n // 8)
    labels = [(LEFT + i * step + step / 2, b.start.astimezone(tz).strftime("%b %d %H:%M"))
              for i, b in enumerate(hist.buckets) if i % every == 0]
    ticks = [(TOP + plot_h - plot_h * v / peak, v) for v in range(0, peak + 1, tick_step)]
    return {"width": WIDTH, "height": HIST_HEIGHT, "left": LEFT, "top": TOP, "plot_h": plot_h, "columns": columns,
            "labels": labels, "ticks": ticks, "histogram": hist, "legend": [(s, status_fill(s)) for s in STATUSES]}


def duration_text(span: timedelta) -> str:
    """``span`` in words for a caption: "14 h 24 min", "2 days", "90 s"."""
    seconds = int(span.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds != 86400 else ''}"
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "min"), (seconds % 60, "s")]
    return " ".join(f"{n} {unit}" for n, unit in parts if n) or "under 1 s"


def moment_param(moment) -> str:
    """A bucket edge as a date_from/date_to value: to the minute when it is whole, else in full."""
    if moment.second == 0 and moment.microsecond == 0:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return moment.astimezone(UTC).isoformat()
