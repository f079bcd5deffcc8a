"""Charts drawn on the server as SVG markup: no script, no CDN, and nothing a strict CSP refuses.

Rules: colours and sizes are SVG presentation attributes (fill, stroke, font-size), never `style`; every
text that came from data goes through `escape`; each chart is an `<svg role="img">` with a `<title>` and
an aria-label, and scales to its container through its viewBox (width="100%").
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
INK, GRID, MUTED = "#333333", "#dddddd", "#666666"
COLOURS = ("#2f6fb3", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#0e7490")


def _svg(body: list[str], *, title: str, height: int = HEIGHT) -> str:
    label = escape(title)
    return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {height}" width="100%" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>{"".join(body)}</svg>')


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 20_000, 50_000,
                 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000):
        if value <= step:
            return float(step)
    return float(value)


def _axes(top_value: float, unit: str, x_labels: Sequence[str], height: int) -> list[str]:
    plot_h = height - TOP - BOTTOM
    out = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">'
                   f'{escape(_short(top_value * fraction))}{escape(unit)}</text>')
    count = len(x_labels)
    if count:
        every = max(1, count // 6)
        step = (WIDTH - LEFT - RIGHT) / count
        for i in range(0, count, every):
            x = LEFT + step * (i + 0.5)
            out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" font-size="11" fill="{MUTED}">'
                       f'{escape(x_labels[i])}</text>')
    return out


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def bar_chart(x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
              unit: str = "") -> str:
    """Stacked bars, one per x label; `series` is (name, values) bottom to top, each its own colour."""
    totals = [sum(values[i] for _, values in series) for i in range(len(x_labels))]
    top = _nice_max(max(totals, default=0))
    plot_h = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(x_labels), 1)
    body = _axes(top, unit, x_labels, HEIGHT)
    for i, label in enumerate(x_labels):
        base = 0.0
        for s, (name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y = TOP + plot_h * (1 - (base + value) / top)
            body.append(f'<rect x="{LEFT + step * i + step * 0.1:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" '
                        f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}"><title>{escape(label)}: '
                        f'{escape(_short(value))} {escape(name)}</title></rect>')
            base += value
    return _svg(body, title=title)


def line_chart(x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, title: str,
               unit: str = "") -> str:
    """One line per series; a missing value (None) breaks the line, a lone point is drawn as a dot."""
    values = [v for _, vs in series for v in vs if v is not None]
    top = _nice_max(max(values, default=0))
    plot_h = HEIGHT - TOP - BOTTOM
    step = (WIDTH - LEFT - RIGHT) / max(len(x_labels), 1)
    body = _axes(top, unit, x_labels, HEIGHT)
    for s, (name, vs) in enumerate(series):
        colour = COLOURS[s % len(COLOURS)]
        points = [(LEFT + step * (i + 0.5), TOP + plot_h * (1 - v / top), v) for i, v in enumerate(vs)
                  if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, v in points:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>{escape(name)}: '
                        f'{v:.0f}{escape(unit)}</title></circle>')
    return _svg(body, title=title)


def hbar_chart(rows: Sequence[tuple[str, float]], *, title: str) -> str:
    """Horizontal bars, one row per (label, value), the value written at the bar's end."""
    row_h = 24
    height = max(len(rows), 1) * row_h + 8
    top = max((v for _, v in rows), default=0) or 1
    label_w = 200
    span = WIDTH - label_w - 60
    body = []
    for i, (label, value) in enumerate(rows):
        y = 4 + i * row_h
        w = span * value / top
        body.append(f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="12" fill="{INK}">'
                    f'{escape(label)}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                    f'fill="{COLOURS[i % len(COLOURS)]}"/>')
        body.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12" fill="{INK}">'
                    f'{escape(_short(value))}</text>')
    return _svg(body, title=title, height=height)


def legend(names: Sequence[str]) -> str:
    """The series' names beside their colours, in the order the charts colour them (an SVG of its own)."""
    body, x = [], 0
    for i, name in enumerate(names):
        body.append(f'<rect x="{x}" y="3" width="10" height="10" fill="{COLOURS[i % len(COLOURS)]}"/>'
                    f'<text x="{x + 14}" y="12" font-size="12" fill="{INK}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return (f'<svg class="legend" role="img" aria-label="Legend: {escape(", ".join(names))}" viewBox="0 0 {x} 16" '
            f'width="{x}" height="16" xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>')


def sparkline(values: Sequence[float], *, title: str, width: int = 160, height: int = 28) -> str:
    """A row's small bar chart (one bar per bucket, no axes): the shape over time beside its total."""
    top = max(values, default=0) or 1
    step = width / max(len(values), 1)
    body = [f'<rect x="{step * i + step * 0.1:.1f}" y="{height - (height - 2) * v / top:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{(height - 2) * v / top:.1f}" fill="{COLOURS[0]}"/>'
            for i, v in enumerate(values) if v > 0]
    body.append(f'<line x1="0" x2="{width}" y1="{height - 0.5}" y2="{height - 0.5}" stroke="{GRID}"/>')
    label = escape(title)
    return (f'<svg class="sparkline" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>{"".join(body)}</svg>')
