"""Inline SVG plots: a partner's cumulative epsilon against its budget, and the canary
score distributions of a release-gate audit (included vs excluded canaries).

Hand-written SVG so the report needs no plotting library and no network to open.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from fedctr.privacy.audit.result import EmpiricalAuditRow, PartnerSummary

CLAIMED_COLOR = "#0969da"
RDP_COLOR = "#bc4c00"
PLD_COLOR = "#8250df"
BUDGET_COLOR = "#a40e26"
FINDING_COLOR = "#cf222e"
GRID_COLOR = "#d0d7de"
INCLUDED_COLOR = "#0969da"  # canaries trained on
EXCLUDED_COLOR = "#bc4c00"  # canaries left out


def _nice_step(span: float) -> float:
    """A round tick step giving 4-8 ticks over ``span``."""
    raw = span / 5
    magnitude = 10 ** _floor_log10(raw)
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _floor_log10(x: float) -> int:
    exponent = 0
    while x >= 10:
        x /= 10
        exponent += 1
    while x < 1:
        x *= 10
        exponent -= 1
    return exponent


def _polyline(points: Sequence[tuple[float, float]], color: str, dash: str, label: str) -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>' for x, y in points)
    return (
        f'<g data-series="{html.escape(label)}"><polyline points="{coords}" fill="none" '
        f'stroke="{color}" stroke-width="2.5" stroke-dasharray="{dash}"/>{dots}</g>'
    )


def _y_grid(
    left: float, plot_w: float, y_max: float, step: float, y_at: Callable[[float], float]
) -> str:
    """Horizontal grid lines with their labels, every ``step`` from 0 to ``y_max``."""
    lines = []
    tick = 0.0
    while tick <= y_max + 1e-12:
        y = y_at(tick)
        lines.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOR}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick:g}</text>'
        )
        tick += step
    return "".join(lines)


def _legend(x: float, top: float, items: Sequence[tuple[str, str, str]]) -> str:
    """One line sample and label per ``(label, color, dash)``, stacked from ``top``."""
    parts = []
    for j, (label, color, dash) in enumerate(items):
        y = top + 12 + 20 * j
        parts.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{color}" '
            f'stroke-width="2.5" stroke-dasharray="{dash}"/>'
            f'<text x="{x + 30}" y="{y + 4}" class="legend">{label}</text>'
        )
    return "".join(parts)


def epsilon_plot(summary: PartnerSummary, *, width: int = 530, height: int = 300) -> str:
    """SVG: claimed and independent cumulative epsilon per release, and the budget line."""
    rows = summary.rows
    pid = html.escape(summary.partner_id)
    left, right, top, bottom = 52, 150, 20, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    budget = max((r.budget_epsilon for r in rows), default=1.0)
    peak = max(
        [budget]
        + [r.claimed for r in rows]
        + [r.independent_rdp for r in rows]
        + [r.independent_pld for r in rows if r.independent_pld is not None]
    )
    step = _nice_step(peak * 1.1 or 1.0)
    y_max = step * (int(peak * 1.1 / step) + 1)

    def x_at(i: int) -> float:
        return left + (plot_w / 2 if len(rows) == 1 else plot_w * i / (len(rows) - 1))

    def y_at(eps: float) -> float:
        return top + plot_h * (1 - eps / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" data-testid="epsilon-plot-{pid}" '
        f'class="plot"><title>Cumulative epsilon of {pid} per release vs its budget</title>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        f'stroke="{GRID_COLOR}"/>',
    ]
    parts.append(_y_grid(left, plot_w, y_max, step, y_at))
    for i, r in enumerate(rows):
        parts.append(
            f'<text x="{x_at(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'class="tick">{r.round}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="axis">'
        "round (releases in ledger order)</text>"
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">cumulative ε</text>'
    )
    y_budget = y_at(budget)
    parts.append(
        f'<g data-series="budget"><line x1="{left}" y1="{y_budget:.1f}" x2="{left + plot_w}" '
        f'y2="{y_budget:.1f}" stroke="{BUDGET_COLOR}" stroke-width="3" stroke-dasharray="8 4"/>'
        f'<text x="{left + plot_w - 4}" y="{y_budget - 6:.1f}" text-anchor="end" '
        f'class="budget-label" fill="{BUDGET_COLOR}">budget ε={budget:g}</text></g>'
    )
    parts.append(
        _polyline(
            [(x_at(i), y_at(r.independent_rdp)) for i, r in enumerate(rows)],
            RDP_COLOR,
            "6 3",
            "rdp",
        )
    )
    pld = [
        (x_at(i), y_at(r.independent_pld))
        for i, r in enumerate(rows)
        if r.independent_pld is not None
    ]
    parts.append(_polyline(pld, PLD_COLOR, "2 3", "pld"))
    parts.append(
        _polyline(
            [(x_at(i), y_at(r.claimed)) for i, r in enumerate(rows)], CLAIMED_COLOR, "", "claimed"
        )
    )
    for i, r in enumerate(rows):
        if r.understated or r.over_budget:
            parts.append(
                f'<circle cx="{x_at(i):.1f}" cy="{y_at(r.claimed):.1f}" r="8" fill="none" '
                f'stroke="{FINDING_COLOR}" stroke-width="2.5"><title>finding</title></circle>'
            )
    parts.append(
        _legend(
            left + plot_w + 12,
            top,
            (
                ("claimed", CLAIMED_COLOR, ""),
                ("independent RDP", RDP_COLOR, "6 3"),
                ("independent PLD", PLD_COLOR, "2 3"),
                ("budget", BUDGET_COLOR, "8 4"),
            ),
        )
    )
    if not rows:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
            'class="axis">no releases</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def canary_plot(
    audit: EmpiricalAuditRow, *, testid: str, width: int = 530, height: int = 300
) -> str:
    """SVG: the canary score histogram of one gate audit, included next to excluded.

    Two bars per bin (included left, excluded right). A correct DP-SGD shows two
    overlapping distributions; the further the included canaries sit to the right of
    the excluded ones, the more the model remembers them, and the higher the bound.
    """
    hist = audit.body.histogram
    left, right, top, bottom = 52, 150, 20, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((*hist.included, *hist.excluded, 1))
    step = max(1.0, _nice_step(peak * 1.1))
    y_max = step * (int(peak * 1.1 / step) + 1)
    low, high = hist.edges[0], hist.edges[-1]

    def x_at(score: float) -> float:
        return left + plot_w * (score - low) / (high - low)

    def y_at(count: float) -> float:
        return top + plot_h * (1 - count / y_max)

    who = html.escape(", ".join(audit.body.partners))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" data-testid="{html.escape(testid)}" '
        f'class="plot"><title>Canary scores of the release-gate audit of {who}: '
        "included vs excluded</title>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#ffffff" '
        f'stroke="{GRID_COLOR}"/>',
        _y_grid(left, plot_w, y_max, step, y_at),
    ]
    for series, counts, color, offset in (
        ("included", hist.included, INCLUDED_COLOR, 0.0),
        ("excluded", hist.excluded, EXCLUDED_COLOR, 0.5),
    ):
        bars = []
        for a, b, count in zip(hist.edges, hist.edges[1:], counts, strict=False):
            x0, x1 = x_at(a), x_at(b)
            bar_w = (x1 - x0) / 2
            y = y_at(count)
            bars.append(
                f'<rect x="{x0 + offset * (x1 - x0):.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{top + plot_h - y:.1f}" fill="{color}"/>'
            )
        parts.append(f'<g data-series="{series}">{"".join(bars)}</g>')
    for score in (low, (low + high) / 2, high):
        parts.append(
            f'<text x="{x_at(score):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'class="tick">{score:.3g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="axis">'
        "canary score (higher: looks trained on)</text>"
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">canaries</text>'
    )
    included, excluded = sum(hist.included), sum(hist.excluded)
    parts.append(
        _legend(
            left + plot_w + 12,
            top,
            (
                (f"included ({included})", INCLUDED_COLOR, ""),
                (f"excluded ({excluded})", EXCLUDED_COLOR, ""),
            ),
        )
    )
    parts.append("</svg>")
    return "".join(parts)


__all__ = [
    "BUDGET_COLOR",
    "CLAIMED_COLOR",
    "EXCLUDED_COLOR",
    "FINDING_COLOR",
    "INCLUDED_COLOR",
    "PLD_COLOR",
    "RDP_COLOR",
    "canary_plot",
    "epsilon_plot",
]
