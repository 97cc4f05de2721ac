"""Inline SVG line plots of a partner's cumulative epsilon against its budget.

Hand-written SVG so the report needs no plotting library and no network to open.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from fedctr.privacy.audit.result import PartnerSummary

CLAIMED_COLOR = "#0969da"
RDP_COLOR = "#bc4c00"
PLD_COLOR = "#8250df"
BUDGET_COLOR = "#a40e26"
FINDING_COLOR = "#cf222e"
GRID_COLOR = "#d0d7de"


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
    tick = 0.0
    while tick <= y_max + 1e-12:
        y = y_at(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOR}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick:g}</text>'
        )
        tick += step
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
    legend_x = left + plot_w + 12
    for j, (label, color, dash) in enumerate(
        (
            ("claimed", CLAIMED_COLOR, ""),
            ("independent RDP", RDP_COLOR, "6 3"),
            ("independent PLD", PLD_COLOR, "2 3"),
            ("budget", BUDGET_COLOR, "8 4"),
        )
    ):
        y = top + 12 + 20 * j
        parts.append(
            f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 24}" y2="{y}" stroke="{color}" '
            f'stroke-width="2.5" stroke-dasharray="{dash}"/>'
            f'<text x="{legend_x + 30}" y="{y + 4}" class="legend">{label}</text>'
        )
    if not rows:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
            'class="axis">no releases</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


__all__ = [
    "BUDGET_COLOR",
    "CLAIMED_COLOR",
    "FINDING_COLOR",
    "PLD_COLOR",
    "RDP_COLOR",
    "epsilon_plot",
]
