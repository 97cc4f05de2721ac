"""The audit report: one self-contained HTML page for people, one JSON file for machines.

The HTML has inline CSS and inline SVG only (no script, no network), so it opens
anywhere an auditor copies it. Every value from a ledger or card is escaped.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from fedctr.durable import replace_file
from privacy.audit.plots import epsilon_plot
from privacy.audit.result import AuditResult, EpsilonRow, PartnerSummary
from privacy.audit.statement import PrivacyStatement, privacy_statement

TEMPLATE = "report.html"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], *, testid: str | None = None) -> str:
    attr = f' data-testid="{testid}"' if testid else ""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, *, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if num else "", cls) if c)
    return f'<td class="{classes}">{value}</td>' if classes else f"<td>{value}</td>"


def _summary(result: AuditResult) -> str:
    rows = []
    for p in result.partners:
        final = p.final
        status = '<span class="ok">ok</span>'
        if final is not None and (final.understated or final.over_budget):
            status = '<span class="bad">finding</span>'
        rows.append(
            [
                _td(_e(p.partner_id)),
                _td(p.entries, num=True),
                _td(_e(final.accountant) if final else "-"),
                _td(_num(final.claimed if final else None), num=True),
                _td(_num(final.independent_rdp if final else None), num=True),
                _td(_num(final.independent_pld if final else None), num=True),
                _td(_e(f"{final.budget_epsilon:g}") if final else "-", num=True),
                _td(_e(f"{final.delta:g}") if final else "-", num=True),
                _td(status),
            ]
        )
    table = _table(
        [
            "partner",
            "ledger entries",
            "accountant",
            "final ε claimed",
            "ε indep. RDP",
            "ε indep. PLD",
            "budget ε",
            "δ",
            "status",
        ],
        rows,
        testid="summary-table",
    )
    return (
        f"<p>{len(result.partners)} partner ledger(s), {len(result.lineage)} published "
        f"model(s), {len(result.findings)} finding(s). Tolerance for claimed vs independent "
        f"epsilon: {result.tolerance:.2%} (relative).</p>{table}"
    )


def _statement(statement: PrivacyStatement) -> str:
    general = "".join(
        f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>"
        for term, text in (
            ("Unit of privacy", statement.unit_of_privacy),
            ("Neighbouring datasets", statement.neighbouring),
            ("Variant", statement.variant),
            ("Mechanism", statement.mechanism),
            ("Accounting", statement.accounting),
            ("Trust model", statement.trust_model),
        )
    )
    partners = "".join(
        f"<li><strong>{_e(g.partner_id)}</strong>: {_e(g.sentence)} "
        f'<span class="muted">Mechanism: {_e(g.mechanism)}.</span>'
        + (f' <span class="bad">{_e(g.delta_note)}</span>' if g.delta_note else "")
        + "</li>"
        for g in statement.partners
    )
    hazards = "".join(
        f"<li><strong>{_e(topic)}.</strong> {_e(why)}</li>" for topic, why in statement.not_covered
    )
    return (
        f'<dl class="statement">{general}</dl>'
        f"<h3>Guarantee per partner</h3><ul>{partners or '<li>no releases</li>'}</ul>"
        f'<h3>What this guarantee does not cover</h3><ul class="not-covered">{hazards}</ul>'
    )


def _row_status(row: EpsilonRow) -> str:
    problems = [
        w for w, bad in (("understated", row.understated), ("over budget", row.over_budget)) if bad
    ]
    return (
        f'<span class="bad">{", ".join(problems)}</span>'
        if problems
        else '<span class="ok">ok</span>'
    )


def _epsilon_table(summary: PartnerSummary) -> str:
    rows = [
        [
            _td(_e(r.run_id)),
            _td(r.round, num=True),
            _td(r.seq, num=True),
            _td(
                _e(
                    f"σ={r.noise_multiplier:g} q={r.sample_rate:g} "
                    f"T={r.steps} C={r.max_grad_norm:g}"
                )
            ),
            _td(_e(r.accountant)),
            _td(_num(r.claimed), num=True),
            _td(_num(r.independent_rdp), num=True),
            _td(_num(r.independent_pld), num=True),
            _td(_e(r.tightest)),
            _td(_e(f"{r.budget_epsilon:g}"), num=True),
            _td(_row_status(r)),
        ]
        for r in summary.rows
    ]
    return f"<h3>{_e(summary.partner_id)} ({_e(summary.ledger)})</h3>" + _table(
        [
            "run",
            "round",
            "seq",
            "mechanism",
            "acct.",
            "claimed ε",
            "RDP ε",
            "PLD ε",
            "tightest",
            "budget",
            "status",
        ],
        rows,
    )


def _lineage(result: AuditResult) -> str:
    if not result.lineage:
        return '<p class="muted">The platform ledger records no published model.</p>'
    rows = [
        [
            _td(f"<code>{_e(m.model_version)}</code>"),
            _td(_e(m.run_id)),
            _td(m.rounds, num=True),
            _td(_e(", ".join(f"{pid} (ε={eps:.4f})" for pid, eps in m.partner_epsilons))),
            _td(f"<code>{_e(m.weights_sha256[:16])}…</code>"),
            _td(f"<code>{_e(m.card_sha256[:16])}…</code>"),
            _td(f"platform.jsonl seq {m.publish_seq}"),
            _td(
                _e(m.card_source) if m.card_source else '<span class="bad">no matching card</span>'
            ),
        ]
        for m in result.lineage
    ]
    return _table(
        [
            "version",
            "run",
            "rounds",
            "partners (ε)",
            "weights sha256",
            "card sha256",
            "published in",
            "card",
        ],
        rows,
        testid="lineage-table",
    )


def _findings(result: AuditResult) -> str:
    if not result.findings:
        return (
            '<p class="ok">No findings: every signature, chain, cross-check and '
            "recomputation passed.</p>"
        )
    rows = []
    for f in result.findings:
        entry = (
            "<details><summary>entry</summary><pre>"
            + _e(json.dumps(f.entry, indent=2, sort_keys=True))
            + "</pre></details>"
            if f.entry is not None
            else ""
        )
        rows.append(
            [
                _td(f'<span class="bad">{_e(f.code)}</span>'),
                _td(_e(f.where())),
                _td(_e(f.message) + entry),
            ]
        )
    return _table(["finding", "where", "what is wrong"], rows, testid="findings-table")


def _inputs(result: AuditResult) -> str:
    rows = [
        [
            _td(_e(i.role)),
            _td(_e(i.name)),
            _td("-" if i.entries is None else i.entries, num=True),
            _td(f"<code>{_e(i.sha256 or 'unreadable')}</code>"),
        ]
        for i in result.inputs
    ]
    return _table(["role", "file", "entries", "sha256"], rows)


def render_html(result: AuditResult, *, generated_at: datetime) -> str:
    """The report as one HTML string."""
    statement = privacy_statement(result)
    count = len(result.findings)
    template = Template(resources.files("privacy.audit").joinpath(TEMPLATE).read_text("utf-8"))
    return template.substitute(
        verdict=result.verdict,
        verdict_class="pass" if result.passed else "fail",
        verdict_headline=(
            "no findings" if result.passed else f"{count} finding{'s' if count != 1 else ''}"
        ),
        verdict_detail=_e(
            f"fedctr privacy audit, generated {generated_at.isoformat(timespec='seconds')}: "
            f"{len(result.partners)} partner ledger(s), {len(result.lineage)} published model(s)."
        ),
        summary=_summary(result),
        statement=_statement(statement),
        plots="".join(f'<div class="plot-card">{epsilon_plot(p)}</div>' for p in result.partners),
        epsilon_tables="".join(_epsilon_table(p) for p in result.partners),
        lineage=_lineage(result),
        finding_count=count,
        findings=_findings(result),
        inputs=_inputs(result),
    )


def report_dict(result: AuditResult, *, generated_at: datetime) -> dict[str, Any]:
    """The machine-readable report: the result, the privacy statement, when."""
    return {
        **result.to_dict(),
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "privacy_statement": privacy_statement(result).to_dict(),
    }


def _write(path: Path, text: str) -> None:
    """Atomically, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text.encode("utf-8"))


def write_report(
    result: AuditResult,
    html_path: str | Path,
    json_path: str | Path,
    *,
    generated_at: datetime | None = None,
) -> None:
    """Write the HTML and JSON reports of ``result``."""
    when = generated_at or datetime.now(UTC)
    _write(Path(html_path), render_html(result, generated_at=when))
    _write(
        Path(json_path),
        json.dumps(report_dict(result, generated_at=when), indent=2, sort_keys=True) + "\n",
    )


__all__ = ["render_html", "report_dict", "write_report"]
