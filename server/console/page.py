"""The console page: one server-rendered HTML document, inline CSS and SVG, no script.

It refreshes itself (``<meta http-equiv="refresh">``). Every number it shows comes
from the :class:`~.overview.Overview` the JSON API returns, and each cell says which
one in ``data-k`` (tests compare the rendered page with the API through it).
"""

from __future__ import annotations

import html
import math
from typing import Any

from fedctr.server.console.overview import Overview, RunView
from fedctr.server.console.plots import Series, line_plot

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#eee}
td.l,th.l{text-align:left}.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}
.muted{color:#777}.alert-critical{background:#fde2e2}.alert-warning{background:#fff4d6}
.plots{display:flex;flex-wrap:wrap;gap:16px}.tick,.legend{font-size:11px}.axis{font-size:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _cell(key: str, value: float | int | None, digits: int = 4) -> str:
    text = str(value) if isinstance(value, int) else _num(value, digits)
    return f'<td data-k="{_e(key)}">{text}</td>'


def _interval(ci: list[float] | tuple[float, float] | None) -> str:
    return "–" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _alerts(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return '<p class="muted" data-testid="no-alerts">No alerts.</p>'
    rows = "".join(
        f'<tr class="alert-{_e(a["severity"])}"><td class="l">{_e(a["name"])}</td>'
        f'<td class="l">{_e(a["severity"])}</td><td class="l">{_e(a["summary"])}</td></tr>'
        for a in alerts[-50:]
    )
    return (
        '<table data-testid="alerts"><tr><th class="l">alert</th><th class="l">severity</th>'
        f'<th class="l">summary</th></tr>{rows}</table>'
    )


def _run(run: RunView) -> str:
    rid = run.run_id
    rows = "".join(
        f"<tr><td>{r.round}</td><td>{'yes' if r.aggregated else 'no'}</td>"
        + _cell(f"run:{rid}:round:{r.round}:contributors", r.contributors)
        + _cell(f"run:{rid}:round:{r.round}:refusals", r.refusals)
        + _cell(f"run:{rid}:round:{r.round}:auc", r.auc)
        + _cell(f"run:{rid}:round:{r.round}:logloss", r.logloss)
        + "</tr>"
        for r in run.rounds
    )
    table = (
        f'<table data-testid="rounds-{_e(rid)}"><tr><th>round</th><th>aggregated</th>'
        f"<th>partners contributing</th><th>refusals</th><th>AUC</th><th>logloss</th></tr>"
        f"{rows}</table>"
    )
    auc = line_plot(
        f"auc-plot-{rid}",
        f"Platform holdout AUC of run {rid} by round",
        [Series("AUC", [(r.round, r.auc) for r in run.rounds if r.auc is not None])],
        x_label="round",
        y_label="AUC",
    )
    series = [
        Series(pid, [(p.round, p.epsilon) for p in points]) for pid, points in run.epsilon.items()
    ]
    budgets = sorted({p.budget for points in run.epsilon.values() for p in points})
    rounds = [r.round for r in run.rounds] or [1]
    series += [
        Series(f"budget ε={b:g}", [(min(rounds), b), (max(rounds), b)], dashed=True, color="#555")
        for b in budgets
        if math.isfinite(b)
    ]
    eps = line_plot(
        f"epsilon-plot-{rid}",
        f"Cumulative epsilon per partner in run {rid} against its budget",
        series,
        x_label="round",
        y_label="cumulative ε",
    )
    spent = "".join(
        f'<tr><td class="l">{_e(pid)}</td>'
        + _cell(f"run:{rid}:partner:{pid}:epsilon", points[-1].epsilon, 3)
        + _cell(f"run:{rid}:partner:{pid}:budget", points[-1].budget, 3)
        + "</tr>"
        for pid, points in run.epsilon.items()
    )
    return (
        f'<section data-testid="run-{_e(rid)}"><h3>Run {_e(rid)}</h3>{table}'
        f'<div class="plots">{auc}{eps}</div>'
        f'<table><tr><th class="l">partner</th><th>ε spent</th><th>ε budget</th></tr>{spent}'
        "</table></section>"
    )


def _versions(overview: Overview) -> str:
    if not overview.versions:
        return '<p class="muted">No published model.</p>'
    rows = []
    for v in overview.versions:
        ok = v.signature == "verified"
        partners = ", ".join(f"{p['partner_id']} ε={p['epsilon']:g}" for p in v.partners)
        rows.append(
            f'<tr><td class="l">{_e(v.version)}{" (LATEST)" if v.latest else ""}</td>'
            f'<td class="l {"ok" if ok else "bad"}" data-k="version:{_e(v.version)}:signature">'
            f'{_e(v.signature)}</td><td class="l">{_e(v.run_id or "–")}</td>'
            f'<td class="l">{_e(v.created_at or "–")}</td><td class="l">{_e(v.model or "–")}</td>'
            + _cell(f"version:{v.version}:auc", v.auc)
            + f'<td class="l">{_e(partners)}</td></tr>'
        )
    return (
        '<table data-testid="versions"><tr><th class="l">version</th><th class="l">signature'
        '</th><th class="l">run</th><th class="l">created</th><th class="l">model</th>'
        f'<th>AUC</th><th class="l">partners (ε)</th></tr>{"".join(rows)}</table>'
    )


def _serving(overview: Overview) -> str:
    if overview.serving is None:
        note = overview.serving_error or "no scoring service configured (--scoring-url)"
        return f'<p class="muted" data-testid="serving-missing">{_e(note)}</p>'
    s = overview.serving
    state = (
        f'<span class="bad">rolled back ({_e(s["rolled_back"])})</span>'
        if s["rolled_back"]
        else '<span class="ok">rolling out</span>'
    )
    rows = []
    for arm, f in s["arms"].items():
        rows.append(
            f'<tr><td class="l">{_e(arm)}</td><td class="l">{_e(f.get("model_version") or "–")}'
            "</td>"
            + _cell(f"arm:{arm}:served", f["served"])
            + _cell(f"arm:{arm}:mean_prediction", f["mean_prediction"])
            + _cell(f"arm:{arm}:recorded", f["recorded"])
            + _cell(f"arm:{arm}:clicks", f["clicks"])
            + _cell(f"arm:{arm}:ctr", f["ctr"])
            + f"<td>{_interval(f['ctr_ci95'])}</td>"
            + _cell(f"arm:{arm}:calibration", f["calibration"])
            + f"<td>{_interval(f['calibration_ci95'])}</td>"
            + _cell(f"arm:{arm}:breaker_trips", f["breaker_trips"])
            + "</tr>"
        )
    return (
        f'<p>Canary share <b data-k="canary_share">{s["canary_share"]:.4f}</b> of keyed '
        f"traffic (split by {_e(s['split_key'])}), {state}.</p>"
        '<table data-testid="arms"><tr><th class="l">arm</th><th class="l">version</th>'
        "<th>served</th><th>mean prediction</th><th>recorded</th><th>clicks</th><th>CTR</th>"
        "<th>CTR 95% CI</th><th>calibration</th><th>calibration 95% CI</th>"
        f"<th>breaker trips</th></tr>{''.join(rows)}</table>"
    )


def render(overview: Overview, *, refresh_s: int = 10) -> str:
    runs = "".join(_run(r) for r in overview.runs) or '<p class="muted">No federation run.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{refresh_s}"><title>fedctr console</title>'
        f"<style>{CSS}</style></head><body><h1>fedctr operator console</h1>"
        '<p class="muted">Read-only. Federation runs, each partner\'s privacy spend, model '
        "versions and serving arms; the same numbers as <code>/api/overview</code>.</p>"
        f"<h2>Alerts</h2>{_alerts(overview.alerts)}"
        f"<h2>Serving arms</h2>{_serving(overview)}"
        f"<h2>Federation runs</h2>{runs}"
        f"<h2>Model versions</h2>{_versions(overview)}"
        "</body></html>"
    )


__all__ = ["render"]
