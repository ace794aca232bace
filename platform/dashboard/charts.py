"""Small server-rendered SVG charts for the dashboard: no JavaScript, no CDN, readable without colour
(every bar is labelled), and each chart carries a <title> and <desc> for screen readers.

Shares (0..1) are drawn and written as percentages with one decimal (`pct`). Text never runs outside its
box: label columns are as wide as the longest label, and a label wider than its column is wrapped onto
more lines (never cut). Widths are estimated from the characters (`text_width`, deliberately generous);
tests/browser/test_dashboard_screenshots.py measures the real widths in chromium."""

from __future__ import annotations

import math
from html import escape

PALETTE = [  # ordered so that neighbours differ in hue and each reads on white (contrast >= 4.5)
    "#0b5cad",
    "#c2410c",
    "#15803d",
    "#7c3aed",
    "#be185d",
    "#a16207",
    "#0e7490",
    "#334155",
    "#b91c1c",
    "#4d7c0f",
]
FONT_SIZE = 12
LINE_H = 14
AXIS = "#666"
GRID = "#e5e5e5"
NBSP = "\u00a0"

# Advance widths in em for a typical sans-serif, rounded up, so estimates err on the wide side.
_NARROW = set("iljtfrI.,:;'|!()[] ")
_WIDE = set("mwMW@%")


def pct(share: float | None, *, decimals: int = 1) -> str:
    """A share in [0, 1] as a percentage with at most one decimal: 0.9333 -> '93.3 %' ('–' for None)."""
    if share is None:
        return "–"
    return f"{100.0 * share:.{decimals}f}{NBSP}%"


def text_width(text: str, size: int = FONT_SIZE) -> float:
    """A generous estimate of the rendered width of `text` in pixels at `size` px."""
    em = 0.0
    for ch in text:
        if ch in _NARROW:
            em += 0.34
        elif ch in _WIDE:
            em += 0.9
        elif ch.isupper() or ch.isdigit():
            em += 0.66
        else:
            em += 0.58
    return em * size


def wrap(text: str, max_px: float, size: int = FONT_SIZE) -> list[str]:
    """Split `text` into lines no wider than max_px, at spaces where it can, inside a word where a single
    word is wider than a line; every character is kept."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, size) <= max_px:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:
            if line and text_width(line + ch, size) > max_px:
                lines.append(line)
                line = ""
            line += ch
    lines.append(line)
    return lines


def _text(x: float, y: float, lines: list[str], *, anchor: str = "start", extra: str = "") -> str:
    """One <text> element; several lines become <tspan>s one LINE_H apart, starting at y."""
    attrs = f'x="{x:.1f}" y="{y:.1f}"' + (f' text-anchor="{anchor}"' if anchor != "start" else "") + extra
    if len(lines) == 1:
        return f"<text {attrs}>{escape(lines[0])}</text>"
    spans = "".join(
        f'<tspan x="{x:.1f}" dy="{0 if i == 0 else LINE_H}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return f"<text {attrs}>{spans}</text>"


def _svg(width: int, height: float, title: str, desc: str, body: list[str], css_class: str) -> str:
    height = int(math.ceil(height))
    return (
        f'<svg class="chart {css_class}" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="{FONT_SIZE}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{''.join(body)}</svg>"
    )


def _empty(width: int, title: str, message: str, css_class: str) -> str:
    return _svg(width, 40, title, message, [_text(4, 24, [message], extra=' fill="#555"')], css_class)


def nice_ticks(top: float, n: int = 4, *, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least `top` (0, 5, 10, ... or 0, 0.25, 0.5, ...), about n steps;
    `integer`: whole steps only (counts)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12)
    if integer:
        step = max(1, round(step)) if step < 1 or step == 2.5 else step
    count = int(math.ceil(top / step - 1e-9))
    return [round(step * k, 10) for k in range(count + 1)]


def range_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (multiples of a 1-2-2.5-5 step) inside [lo, hi], about n steps apart."""
    if hi <= lo:
        return [lo]
    step = nice_ticks(hi - lo, n)[1]
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(step * k, 10) for k in range(first, last + 1)]


def _tick(v: float) -> str:
    return f"{v:g}"


def _pct_tick(share: float) -> str:
    """A tick on a percent axis: 50 %, 67.5 % (no trailing zeros, at most one decimal)."""
    return f"{round(100 * share, 1):g}{NBSP}%"


def bar_chart(
    rows: list[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    max_value: float | None = None,
    width: int = 640,
    css_class: str = "bars",
    value_format=None,
) -> str:
    """Horizontal bars with value labels: rows of (label, value). The label column is as wide as the
    longest label (wrapped beyond 40 % of the width); `value_format(value)` writes each value."""
    if not rows:
        return _empty(width, title, "Nothing to show yet.", css_class)
    fmt = value_format or (lambda v: f"{v:.1f}{NBSP}{unit}" if unit == "%" else f"{v:g}{unit}")
    bar_h, gap = 18, 6
    label_w = min(max(text_width(label) for label, _ in rows), width * 0.4)
    left = int(label_w) + 12
    value_w = max(text_width(fmt(v)) for _, v in rows) + 10
    top = max_value or max([v for _, v in rows] + [1e-9])
    body, desc = [], []
    y = 6.0
    for label, value in rows:
        lines = wrap(label, label_w)
        row_h = max(bar_h, len(lines) * LINE_H)
        w = 0 if top <= 0 else (width - left - value_w) * min(1.0, max(0.0, value) / top)
        body.append(_text(left - 8, y + 13, lines, anchor="end"))
        if max_value is not None:  # the whole track, so a short bar reads as a share of the target
            track = width - left - value_w
            body.append(f'<rect x="{left}" y="{y:.1f}" width="{track:.1f}" height="{bar_h}" fill="{GRID}"/>')
        body.append(f'<rect x="{left}" y="{y:.1f}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[0]}"/>')
        body.append(
            _text(width - value_w + 6 if max_value is not None else left + w + 6, y + 13, [fmt(value)])
        )
        desc.append(f"{label}: {fmt(value)}")
        y += row_h + gap
    return _svg(width, y + 4, title, "; ".join(desc), body, css_class)


def column_chart(
    rows: list[tuple[str, float]],
    *,
    title: str,
    x_title: str = "",
    y_title: str = "",
    width: int = 640,
    height: int = 190,
    css_class: str = "columns",
    empty: str = "",
) -> str:
    """Vertical columns over ordered labels (e.g. judgments per hour), with a counted y axis, x labels
    spaced so that they never overlap, and axis titles. `empty`: words drawn over an all-zero chart."""
    n = max(1, len(rows))
    ticks = nice_ticks(max([v for _, v in rows] + [1]), integer=True)
    top = ticks[-1]
    left = 22 + max(text_width(_tick(t)) for t in ticks) + 6
    bottom = 20 + (LINE_H if x_title else 0)
    plot_h = height - bottom - 8
    base = 8 + plot_h
    col_w = (width - left - 4) / n
    body = []
    for t in ticks:
        y = base - plot_h * t / top
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 4, y + 4, [_tick(t)], anchor="end"))
    if y_title:
        body.append(
            f'<text transform="translate(12 {8 + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
            f"{escape(y_title)}</text>"
        )
    label_w = max([text_width(label) for label, _ in rows] + [1]) + 8
    every = max(1, math.ceil(label_w / col_w))
    for i, (label, value) in enumerate(rows):
        h = plot_h * value / top
        x = left + i * col_w
        body.append(
            f'<rect x="{x + 1:.1f}" y="{base - h:.1f}" width="{max(1.0, col_w - 2):.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {value:g}</title></rect>'
        )
        if i % every == 0 and x + label_w <= width:  # a label starts where its column starts
            body.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="{AXIS}"/>')
            body.append(_text(x + 2, base + 15, [label]))
    body.append(f'<line x1="{left}" y1="{base}" x2="{width - 4}" y2="{base}" stroke="{AXIS}"/>')
    if x_title:
        body.append(_text((left + width) / 2, height - 3, [x_title], anchor="middle"))
    if empty and not any(v for _, v in rows):
        body.append(_text((left + width) / 2, 8 + plot_h / 2, [empty], anchor="middle", extra=' fill="#555"'))
    desc = "; ".join(f"{label}: {value:g}" for label, value in rows)
    return _svg(width, height, title, desc, body, css_class)


def histogram(
    values: list[float],
    *,
    title: str,
    x_title: str = "",
    y_title: str = "workers",
    bins: int = 10,
    low: float = 0.0,
    high: float = 1.0,
    marks: list[tuple[float, str]] | None = None,
    width: int = 420,
    height: int = 210,
    css_class: str = "hist",
    empty: str = "No workers yet.",
) -> str:
    """Counts of shares in [low, high] in `bins` bins, drawn as percentages: x ticks at 0, 25, 50, 75 and
    100 %, a counted y axis, axis titles, and dashed marks (value, words) such as a QC threshold."""
    values = [v for v in values if v is not None]
    if not values:
        return _empty(width, title, empty, css_class)
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - low) / (high - low) * bins)))] += 1
    ticks = nice_ticks(max(counts), integer=True)
    top = ticks[-1]
    left = 22 + max(text_width(_tick(t)) for t in ticks) + 6
    right = 14
    mark_rows = len(marks or [])
    plot_top = 8 + mark_rows * LINE_H
    bottom = 20 + LINE_H
    plot_h = height - plot_top - bottom
    base = plot_top + plot_h
    span = width - left - right

    def x(v: float) -> float:
        return left + span * (v - low) / (high - low)

    body = []
    for t in ticks:
        y = base - plot_h * t / top
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 4, y + 4, [_tick(t)], anchor="end"))
    body.append(
        f'<text transform="translate(12 {plot_top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_title)}</text>"
    )
    step = (high - low) / bins
    desc = []
    for k, c in enumerate(counts):
        a, b = low + step * k, low + step * (k + 1)
        h = plot_h * c / top
        words = f"{pct(a, decimals=0)} to {pct(b, decimals=0)}: {c}"
        body.append(
            f'<rect x="{x(a) + 1:.1f}" y="{base - h:.1f}" width="{x(b) - x(a) - 2:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}"><title>{escape(words)}</title></rect>'
        )
        desc.append(words)
    body.append(f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="{AXIS}"/>')
    for t in range(5):
        v = low + (high - low) * t / 4
        body.append(f'<line x1="{x(v):.1f}" y1="{base}" x2="{x(v):.1f}" y2="{base + 4}" stroke="{AXIS}"/>')
        anchor = "start" if t == 0 else "end" if t == 4 else "middle"
        body.append(_text(x(v), base + 16, [pct(v, decimals=0)], anchor=anchor))
    if x_title:
        body.append(_text(left + span / 2, height - 3, [x_title], anchor="middle"))
    for i, (value, words) in enumerate(marks or []):
        mx = x(min(max(value, low), high))
        body.append(
            f'<line x1="{mx:.1f}" y1="{plot_top - 2 - (mark_rows - 1 - i) * LINE_H:.1f}" x2="{mx:.1f}" '
            f'y2="{base}" stroke="#111" stroke-dasharray="4 3" stroke-width="1.5"/>'
        )
        label = f"{words} {pct(value)}"
        anchor = "end" if mx + text_width(label) + 4 > width else "start"
        body.append(_text(mx + (4 if anchor == "start" else -4), 18 + i * LINE_H, [label], anchor=anchor))
        desc.append(label)
    return _svg(width, height, title, "; ".join(desc), body, css_class)


def _score_grid(x, ticks: list[float], top: float, height: float) -> list[str]:
    """Vertical grid lines with their values (percent) along the bottom."""
    body = []
    for v in ticks:
        body.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{height - 24}" stroke="{GRID}"/>')
        body.append(_text(x(v), height - 10, [_pct_tick(v)], anchor="middle"))
    return body


def _score_bar(
    x,
    *,
    lines: list[str],
    score: float,
    lo,
    hi,
    y: float,
    bar_h: int,
    left: int,
    color: str,
    value_x: float,
) -> list[str]:
    """One metric's labelled bar, its confidence-interval whisker (when it has one) and its score,
    right-aligned at value_x in a column of its own (clear of whiskers and the ceiling mark)."""
    body = [
        _text(left - 6, y + 11, lines, anchor="end"),
        f'<rect x="{left}" y="{y:.1f}" width="{x(score) - left:.1f}" height="{bar_h}" '
        f'fill="{color}" opacity=".85"/>',
    ]
    if lo is not None and hi is not None:
        ym = y + bar_h / 2
        body.append(
            f'<line x1="{x(lo):.1f}" y1="{ym:.1f}" x2="{x(hi):.1f}" y2="{ym:.1f}" stroke="#111" '
            'stroke-width="1.5"/>'
        )
        for v in (lo, hi):
            body.append(
                f'<line x1="{x(v):.1f}" y1="{ym - 4:.1f}" x2="{x(v):.1f}" y2="{ym + 4:.1f}" stroke="#111"/>'
            )
    body.append(_text(value_x, y + 11, [pct(score)], anchor="end"))
    return body


def _ceiling_mark(
    cx: float, value: float, y0: float, y1: float, *, title_end: float, width: int
) -> list[str]:
    """The dashed human-ceiling mark across one group, labelled on the group's title line: right of the
    mark, clear of the group's title, inside the chart."""
    label = f"human ceiling {pct(value)}"
    w = text_width(label)
    start = min(max(cx + 4, title_end + 12), width - 2 - w)
    top = y0 - 12
    if (
        start - 2 < cx < start + w + 2
    ):  # the label would sit across the mark: left of it, or the mark starts below
        if cx - 4 - w >= title_end + 12:
            start = cx - 4 - w
        else:
            top = y0 + 1
    return [
        f'<line x1="{cx:.1f}" y1="{top:.1f}" x2="{cx:.1f}" y2="{y1:.1f}" stroke="#111" '
        f'stroke-dasharray="4 3" stroke-width="2"><title>{escape(label)}</title></line>',
        _text(start, y0 - 3, [label]),
    ]


def score_chart(
    groups: list[str],
    series: dict[str, dict[str, tuple[float, float | None, float | None]]],
    *,
    ceiling: dict[str, float] | None = None,
    title: str,
    low: float = 0.5,
    high: float = 1.0,
    width: int = 760,
    css_class: str = "scores",
    colors: dict[str, str] | None = None,
) -> str:
    """Grouped horizontal bars with confidence-interval whiskers: series[metric][group] = (score, lo, hi),
    scores as shares written in percent; a dashed mark per group shows the human ceiling. Metric names
    get a column as wide as the longest (up to 40 % of the width, wrapped beyond)."""
    metrics = list(series)
    if not metrics or not groups:
        return _empty(width, title, "No scores yet.", css_class)
    bar_h = 14
    right = int(text_width(pct(1.0))) + 16
    label_w = min(max(text_width(m) for m in metrics), width * 0.4)
    left = int(label_w) + 14
    wrapped = {m: wrap(m, label_w) for m in metrics}
    span = width - left - right
    ticks = range_ticks(low, high, 5)

    def x(v: float) -> float:
        return left + span * (min(max(v, low), high) - low) / (high - low)

    body: list[str] = []
    desc = []
    y = 6.0
    for group in groups:
        body.append(_text(4, y + 11, [group], extra=' font-weight="600"'))
        y0 = y + 14
        y = y0
        for m, metric in enumerate(metrics):
            if group not in series[metric]:
                continue
            score, lo, hi = series[metric][group]
            body += _score_bar(
                x,
                lines=wrapped[metric],
                score=score,
                lo=lo,
                hi=hi,
                y=y,
                bar_h=bar_h,
                left=left,
                color=(colors or {}).get(metric, PALETTE[m % len(PALETTE)]),
                value_x=width - 2,
            )
            ci = f" [{pct(lo)}, {pct(hi)}]" if lo is not None and hi is not None else ""
            desc.append(f"{group} {metric}: {pct(score)}{ci}")
            y += max(bar_h, len(wrapped[metric]) * LINE_H) + 3
        if ceiling and group in ceiling:
            title_end = 4 + 1.1 * text_width(group)  # the title is bold
            body += _ceiling_mark(x(ceiling[group]), ceiling[group], y0, y, title_end=title_end, width=width)
            desc.append(f"{group} human ceiling: {pct(ceiling[group])}")
        y += 10
    height = y + 28
    return _svg(width, height, title, "; ".join(desc), _score_grid(x, ticks, 4, height) + body, css_class)


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 760,
    height: int = 260,
    css_class: str = "lines",
    colors: dict[str, str] | None = None,
) -> str:
    """One line per series of (x, share) points, y in percent, with axis ticks, axis titles and a legend
    on the right whose long names wrap, listed from the highest last point down (the order of the lines
    at the right edge). `colors` maps a series to its colour (the same metric, the same colour)."""
    order = sorted(series, key=lambda name: -max(series[name])[1] if series[name] else 0)
    colors = {name: (colors or {}).get(name, PALETTE[k % len(PALETTE)]) for k, name in enumerate(series)}
    series = {name: series[name] for name in order}
    points = [pt for pts in series.values() for pt in pts]
    if not points:
        return _empty(width, title, "No data yet.", css_class)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
    y0 = max(0.0, math.floor(y_lo * 20 - 1e-9) / 20)
    y1 = min(1.0, math.ceil(y_hi * 20 + 1e-9) / 20)
    if y1 <= y0:
        y0, y1 = max(0.0, y1 - 0.05), min(1.0, y0 + 0.05)
    legend_w = min(240.0, max(text_width(name) for name in series) + 4)
    right = int(legend_w) + 30
    top, bottom = 10, 38
    y_ticks = range_ticks(y0, y1, 4)
    left = 22 + max(text_width(_pct_tick(t)) for t in y_ticks) + 6
    x_ticks = range_ticks(x0, x1, 5) or [x0]
    lo_x, hi_x = (x0, x1) if x1 > x0 else (x0 - 1, x0 + 1)
    legend = [(name, wrap(name, legend_w)) for name in series]
    legend_h = sum(len(lines) * LINE_H + 4 for _, lines in legend)
    height = max(height, int(top + legend_h + bottom))

    def px(v):
        return left + (width - left - right) * (v - lo_x) / (hi_x - lo_x)

    def py(v):
        return top + (height - top - bottom) * (1 - (v - y0) / (y1 - y0))

    base = height - bottom
    body = []
    for t in y_ticks:
        body.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{width - right}" y2="{py(t):.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 4, py(t) + 4, [_pct_tick(t)], anchor="end"))
    body.append(f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="{AXIS}"/>')
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="{AXIS}"/>')
    for t in x_ticks:
        body.append(f'<line x1="{px(t):.1f}" y1="{base}" x2="{px(t):.1f}" y2="{base + 4}" stroke="{AXIS}"/>')
        body.append(_text(px(t), base + 16, [f"{t:g}"], anchor="middle"))
    body.append(_text((left + width - right) / 2, height - 4, [x_label], anchor="middle"))
    body.append(
        f'<text transform="translate(12 {(top + base) / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    desc = []
    if all(len(pts) == 1 for pts in series.values()):
        body.append(
            _text(
                (left + width - right) / 2,
                top + 12,
                ["One evaluation so far: a line grows with each retrain."],
                anchor="middle",
                extra=' fill="#555"',
            )
        )
    ly = top + 2.0
    for (name, pts), (_, lines) in zip(series.items(), legend, strict=True):
        color = colors[name]
        pts = sorted(pts)
        path = " ".join(f"{'M' if i == 0 else 'L'}{px(a):.1f},{py(b):.1f}" for i, (a, b) in enumerate(pts))
        body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for a, b in pts:
            body.append(
                f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)}: {escape(pct(b))} at {a:g}</title></circle>"
            )
        body.append(f'<rect x="{width - right + 10}" y="{ly:.1f}" width="10" height="10" fill="{color}"/>')
        body.append(_text(width - right + 24, ly + 10, lines))
        ly += len(lines) * LINE_H + 4
        desc.append(f"{name}: " + ", ".join(f"{pct(b)} at {a:g}" for a, b in pts))
    return _svg(width, height, f"{title} ({y_label})", "; ".join(desc), body, css_class)
