"""Inline SVG line plots for the console: no script, no network, escaped labels.

Each plot carries ``data-testid`` and each series ``data-series`` plus its points as
``data-points``, so tests (and screen readers, through ``<title>``) can check what is
drawn against the API's numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
GRID = "#d0d0d0"


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False
    color: str | None = None


def _step(span: float) -> float:
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def line_plot(
    testid: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 260,
) -> str:
    left, right, top, bottom = 56, 150, 16, 40
    pw, ph = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points if math.isfinite(y)] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y_low = min(0.0, min(ys))
    step = _step((max(ys) - y_low) * 1.1 or 1.0)
    y_high = y_low + step * math.ceil(((max(ys) - y_low) * 1.1 or 1.0) / step)

    def px(x: float) -> float:
        return left + pw * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + ph * (1 - (y - y_low) / (y_high - y_low))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="plot" '
        f'data-testid="{html.escape(testid)}"><title>{html.escape(title)}</title>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="{GRID}"/>',
    ]
    y = y_low
    while y <= y_high + 1e-12:
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            f'stroke="{GRID}" stroke-width="0.5"/><text x="{left - 6}" y="{py(y) + 4:.1f}" '
            f'text-anchor="end" class="tick">{y:g}</text>'
        )
        y += step
    for x in sorted(set(xs)):
        out.append(
            f'<text x="{px(x):.1f}" y="{top + ph + 15}" text-anchor="middle" '
            f'class="tick">{x:g}</text>'
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" class="axis">'
        f'{html.escape(x_label)}</text><text x="14" y="{top + ph / 2}" text-anchor="middle" '
        f'class="axis" transform="rotate(-90 14 {top + ph / 2})">{html.escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        pts = [(x, y) for x, y in s.points if math.isfinite(y)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        data = " ".join(f"{x:g}:{y:.6g}" for x, y in pts)
        dash = ' stroke-dasharray="7 4"' if s.dashed else ""
        out.append(
            f'<g data-series="{html.escape(s.label)}" data-points="{data}">'
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="3"{dash}/>'
            + "".join(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>'
                for x, y in pts
            )
            + "</g>"
        )
        ly = top + 14 + 18 * i
        out.append(
            f'<line x1="{left + pw + 10}" x2="{left + pw + 34}" y1="{ly}" y2="{ly}" '
            f'stroke="{color}" stroke-width="3"{dash}/><text x="{left + pw + 40}" y="{ly + 4}" '
            f'class="legend">{html.escape(s.label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


__all__ = ["PALETTE", "Series", "line_plot"]
