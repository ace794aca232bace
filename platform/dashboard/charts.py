"""Small server-rendered SVG charts for the dashboard: no JavaScript, no CDN, readable without colour
(every bar is labelled), and each chart carries a <title> and <desc> for screen readers."""

from __future__ import annotations

from html import escape

PALETTE = [
    "#0b5cad",
    "#c2410c",
    "#15803d",
    "#7c3aed",
    "#b91c1c",
    "#0e7490",
    "#a16207",
    "#be185d",
    "#4d7c0f",
    "#334155",
]


def _svg(width: int, height: int, title: str, desc: str, body: list[str], css_class: str) -> str:
    return (
        f'<svg class="chart {css_class}" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{''.join(body)}</svg>"
    )


def bar_chart(
    rows: list[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    max_value: float | None = None,
    width: int = 640,
    css_class: str = "bars",
) -> str:
    """Horizontal bars with value labels: rows of (label, value)."""
    bar_h, gap, left = 18, 6, 170
    height = max(1, len(rows)) * (bar_h + gap) + 24
    top = max_value or max([v for _, v in rows] + [1e-9])
    body = []
    for i, (label, value) in enumerate(rows):
        y = 8 + i * (bar_h + gap)
        w = 0 if top <= 0 else (width - left - 80) * max(0.0, value) / top
        body.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[0]}"/>')
        body.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{value:g}{escape(unit)}</text>')
    desc = "; ".join(f"{label}: {value:g}{unit}" for label, value in rows)
    return _svg(width, height, title, desc, body, css_class)


def column_chart(
    rows: list[tuple[str, float]],
    *,
    title: str,
    width: int = 640,
    height: int = 160,
    css_class: str = "columns",
) -> str:
    """Vertical columns over time-like labels (e.g. judgments per hour)."""
    n = max(1, len(rows))
    top = max([v for _, v in rows] + [1])
    col_w = (width - 40) / n
    body = [
        f'<line x1="30" y1="{height - 20}" x2="{width}" y2="{height - 20}" stroke="#888"/>',
        f'<text x="26" y="14" text-anchor="end">{top:g}</text>',
    ]
    for i, (label, value) in enumerate(rows):
        h = (height - 40) * value / top
        x = 34 + i * col_w
        body.append(
            f'<rect x="{x:.1f}" y="{height - 20 - h:.1f}" width="{max(1.0, col_w - 2):.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {value:g}</title></rect>'
        )
        if i % max(1, n // 6) == 0:
            body.append(f'<text x="{x:.1f}" y="{height - 5}">{escape(label)}</text>')
    desc = "; ".join(f"{label}: {value:g}" for label, value in rows)
    return _svg(width, height, title, desc, body, css_class)


def histogram(
    values: list[float],
    *,
    title: str,
    bins: int = 10,
    low: float = 0.0,
    high: float = 1.0,
    width: int = 320,
    height: int = 150,
    css_class: str = "hist",
) -> str:
    counts = [0] * bins
    for v in values:
        if v is None:
            continue
        k = min(bins - 1, max(0, int((v - low) / (high - low) * bins)))
        counts[k] += 1
    step = (high - low) / bins
    rows = [(f"{low + step * k:.1f}-{low + step * (k + 1):.1f}", float(c)) for k, c in enumerate(counts)]
    return column_chart(rows, title=title, width=width, height=height, css_class=css_class)


def _score_grid(x, low: float, high: float, height: int) -> list[str]:
    """Six vertical grid lines with their values along the bottom."""
    body = []
    for t in range(6):
        v = low + (high - low) * t / 5
        body.append(f'<line x1="{x(v):.1f}" y1="4" x2="{x(v):.1f}" y2="{height - 26}" stroke="#e5e5e5"/>')
        body.append(f'<text x="{x(v):.1f}" y="{height - 12}" text-anchor="middle">{v:.2f}</text>')
    return body


def _score_bar(
    x, *, metric: str, score: float, lo, hi, y: float, bar_h: int, left: int, color: str
) -> list[str]:
    """One metric's labelled bar, its confidence-interval whisker (when it has one) and its score."""
    body = [
        f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{escape(metric)}</text>',
        f'<rect x="{left}" y="{y}" width="{x(score) - left:.1f}" height="{bar_h}" '
        f'fill="{color}" opacity=".85"/>',
    ]
    if lo is not None and hi is not None:
        ym = y + bar_h / 2
        body.append(
            f'<line x1="{x(lo):.1f}" y1="{ym}" x2="{x(hi):.1f}" y2="{ym}" stroke="#111" stroke-width="1.5"/>'
        )
        for v in (lo, hi):
            body.append(f'<line x1="{x(v):.1f}" y1="{ym - 4}" x2="{x(v):.1f}" y2="{ym + 4}" stroke="#111"/>')
    body.append(f'<text x="{max(x(score), x(hi or score)) + 4:.1f}" y="{y + 11}">{score:.3f}</text>')
    return body


def _ceiling_mark(cx: float, value: float, y0: float, group_h: int) -> str:
    """The dashed human-ceiling mark across one group."""
    return (
        f'<line x1="{cx:.1f}" y1="{y0 + 12}" x2="{cx:.1f}" y2="{y0 + group_h - 2}" stroke="#111" '
        'stroke-dasharray="4 3" stroke-width="2">'
        f"<title>human ceiling {value:.3f}</title></line>"
    )


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
) -> str:
    """Grouped horizontal bars with confidence-interval whiskers: series[metric][group] = (score, lo, hi);
    a dashed mark per group shows the human ceiling."""
    metrics = list(series)
    bar_h, left, right = 14, 200, 60
    group_h = len(metrics) * (bar_h + 3) + 14
    height = len(groups) * group_h + 40
    span = width - left - right

    def x(v: float) -> float:
        return left + span * (min(max(v, low), high) - low) / (high - low)

    body = _score_grid(x, low, high, height)
    desc = []
    for g, group in enumerate(groups):
        y0 = 6 + g * group_h
        body.append(f'<text x="4" y="{y0 + 11}" font-weight="600">{escape(group)}</text>')
        for m, metric in enumerate(metrics):
            if group not in series[metric]:
                continue
            score, lo, hi = series[metric][group]
            y = y0 + 14 + m * (bar_h + 3)
            color = PALETTE[m % len(PALETTE)]
            body += _score_bar(
                x, metric=metric, score=score, lo=lo, hi=hi, y=y, bar_h=bar_h, left=left, color=color
            )
            desc.append(
                f"{group} {metric}: {score:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
            )
        if ceiling and group in ceiling:
            body.append(_ceiling_mark(x(ceiling[group]), ceiling[group], y0, group_h))
            desc.append(f"{group} human ceiling: {ceiling[group]:.3f}")
    return _svg(width, height, title, "; ".join(desc), body, css_class)


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 760,
    height: int = 260,
    css_class: str = "lines",
) -> str:
    """One line per series of (x, y) points, with a legend."""
    points = [pt for pts in series.values() for pt in pts]
    if not points:
        return _svg(width, 40, title, "no data yet", ['<text x="4" y="24">No data yet.</text>'], css_class)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    if y1 - y0 < 0.02:
        y0, y1 = y0 - 0.01, y1 + 0.01
    left, right, top, bottom = 50, 260, 10, 34

    def px(v):
        return left + (width - left - right) * (v - x0) / (x1 - x0)

    def py(v):
        return top + (height - top - bottom) * (1 - (v - y0) / (y1 - y0))

    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="4" y="{top + 10}">{y1:.3f}</text><text x="4" y="{height - bottom}">{y0:.3f}</text>',
        f'<text x="{left}" y="{height - bottom + 14}">{x0:g}</text>',
        f'<text x="{width - right}" y="{height - bottom + 14}" text-anchor="end">{x1:g}</text>',
    ]
    desc = []
    for k, (name, pts) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = sorted(pts)
        path = " ".join(f"{'M' if i == 0 else 'L'}{px(a):.1f},{py(b):.1f}" for i, (a, b) in enumerate(pts))
        body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for a, b in pts:
            body.append(
                f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)}: {b:.3f} at {a:g}</title></circle>"
            )
        ly = top + 14 * k + 8
        body.append(f'<rect x="{width - right + 10}" y="{ly - 8}" width="10" height="10" fill="{color}"/>')
        body.append(f'<text x="{width - right + 24}" y="{ly + 1}">{escape(name)}</text>')
        desc.append(f"{name}: " + ", ".join(f"{b:.3f} at {a:g}" for a, b in pts))
    return _svg(width, height, f"{title} ({y_label})", "; ".join(desc), body, css_class)
