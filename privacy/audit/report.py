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
from fedctr.privacy.audit.contract import DeclaredValue
from fedctr.privacy.audit.plots import canary_plot, epsilon_plot
from fedctr.privacy.audit.result import AuditResult, EmpiricalAuditRow, EpsilonRow, PartnerSummary
from fedctr.privacy.audit.statement import (
    PartnerGuarantee,
    PrivacyStatement,
    mechanisms_text,
    privacy_statement,
)

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


def _releases_table(g: PartnerGuarantee) -> str:
    rows = [
        [
            _td(_e(r.run_id)),
            _td(r.round, num=True),
            _td(
                f"<code>{_e(r.update_hash[:16])}…</code>"
                + (" masked (SecAgg+)" if r.secure_aggregation != "none" else "")
                if r.update_hash is not None
                else f"withheld ({_e(r.withheld)}): counted, nothing sent"
            ),
            _td(
                _e(
                    f"{r.noise_multiplier:g}"
                    + (
                        ""
                        if r.selection_noise_multiplier is None
                        else f" + σ_select {r.selection_noise_multiplier:g}"
                    )
                    + (
                        ""
                        if r.noise_shares is None
                        else f" (Skellam, summed over ≥ {r.noise_shares} shares)"
                    )
                ),
                num=True,
            ),
            _td(_e(f"{r.sample_rate:g}"), num=True),
            _td(r.steps, num=True),
            _td(_e(f"{r.max_grad_norm:g}"), num=True),
            _td(_e(r.accountant)),
            _td(_e(f"{r.delta:g}"), num=True),
            _td(_num(r.epsilon_claimed), num=True),
            _td(_num(r.epsilon_independent_rdp), num=True),
            _td(_num(r.epsilon_independent_pld), num=True),
        ]
        for r in g.releases
    ]
    return _table(
        [
            "run",
            "round",
            "update sha256",
            "σ",
            "q",
            "steps",
            "C",
            "accountant",
            "δ",
            "ε claimed",
            "ε recomputed RDP",
            "ε recomputed PLD",
        ],
        rows,
        testid=f"dp-releases-{g.partner_id}",
    )


def _contract_table(values: tuple[DeclaredValue, ...], testid: str) -> str:
    rows = [
        [
            _td(_e(v.crosses)),
            _td(_e(v.record)),
            _td(f"<code>{_e(v.key)}</code>"),
            _td(_e(v.covered_by)),
        ]
        for v in values
    ]
    return _table(["crosses", "record", "value", "covered by / why"], rows, testid=testid)


def _statement(statement: PrivacyStatement) -> str:
    general = "".join(
        f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>"
        for term, text in (
            ("Unit of privacy", statement.unit_of_privacy),
            ("Neighbouring datasets", statement.neighbouring),
            ("Variant", statement.variant),
            ("Mechanism", statement.mechanism),
            ("Accounting", statement.accounting),
            ("δ and the number of rows", statement.delta_check),
            ("Trust model", statement.trust_model),
        )
    )
    partners = "".join(
        f"<li>{_e(g.sentence)} "
        f'<span class="muted">Mechanism: {_e(g.mechanism)}.</span>'
        + (f' <span class="bad">{_e(g.finding_note)}</span>' if g.finding_note else "")
        + _releases_table(g)
        + "</li>"
        for g in statement.partners
    )

    def topics(items: tuple[tuple[str, str], ...], cls: str) -> str:
        body = "".join(f"<li><strong>{_e(t)}.</strong> {_e(w)}</li>" for t, w in items)
        return f'<ul class="{cls}">{body}</ul>'

    empirical = "".join(f"<li>{_e(sentence)}</li>" for sentence in statement.empirical_audits)
    return (
        f'<dl class="statement">{general}</dl>'
        f"<h3>Guarantee per partner: its DP releases</h3>"
        f"<ul>{partners or '<li>no releases</li>'}</ul>"
        + (
            f'<h3>Empirical audit</h3><ul data-testid="statement-empirical">{empirical}</ul>'
            if empirical
            else ""
        )
        + "<h3>What may cross a trust boundary (the wire contract, fedctr.privacy.wire)</h3>"
        "<h4>DP releases: covered by the guarantee above</h4>"
        + _contract_table(statement.dp_releases, "contract-dp-releases")
        + "<h4>Public by declaration: functions of configuration, never of the rows</h4>"
        + _contract_table(statement.public_by_declaration, "contract-public")
        + "<h4>Not sent: never leaves the partner's node</h4>"
        + _contract_table(statement.not_sent, "contract-not-sent")
        + "<h3>Disclosed without DP</h3>"
        + topics(statement.disclosed_without_dp, "disclosed")
        + "<h3>What this guarantee does not cover</h3>"
        + topics(statement.not_covered, "not-covered")
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
                    + (
                        ""
                        if r.selection_noise_multiplier is None
                        else f" σ_select={r.selection_noise_multiplier:g}"
                    )
                    + ("" if r.unit_of_privacy == "example" else f" unit={r.unit_of_privacy}")
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


def _audit_status(audit: EmpiricalAuditRow) -> str:
    verdict = (
        '<span class="ok">passed</span>'
        if audit.body.passed
        else '<span class="bad">REFUTED</span>'
    )
    if audit.findings:
        verdict += ' <span class="bad">' + _e(", ".join(audit.findings)) + "</span>"
    return verdict


def _empirical(result: AuditResult) -> str:
    """Each release-gate audit: the configuration, the counts, the bound next to the
    claim with their ratio, and the canary score distributions it came from."""
    if not result.empirical_audits:
        return (
            '<p class="muted" data-testid="no-empirical-audit">No empirical audit was run: '
            "the platform ledger holds no platform-empirical-audit entry, so nothing here "
            "checks that the training code delivers the claimed ε.</p>"
        )
    rows = []
    plots = []
    for i, a in enumerate(result.empirical_audits):
        b = a.body
        recomputed = (
            "" if a.recomputed_bound is None else f" (recomputed {_num(a.recomputed_bound)})"
        )
        rows.append(
            [
                _td(_e(", ".join(b.partners))),
                _td(_e(b.model)),
                _td(_e(b.dp_implementation)),
                _td(_e(mechanisms_text(a))),
                _td(b.canaries, num=True),
                _td(f"{b.correct}/{b.guesses}", num=True),
                _td(_e(f"{b.lower_bound:.4f} at {b.confidence:.0%}{recomputed}"), num=True),
                _td(_e(f"{b.claimed_epsilon:.4f} ({b.accountant}, δ={b.delta:g})"), num=True),
                _td(_num(a.tightness, 3), num=True),
                _td(_audit_status(a)),
                _td(_e(f"{a.source} seq {a.seq}")),
            ]
        )
        plots.append(
            f'<div class="plot-card"><h4>{_e(", ".join(b.partners))} ({_e(b.model)}, '
            f"{_e(b.dp_implementation)})</h4>{canary_plot(a, testid=f'canary-plot-{i}')}</div>"
        )
    table = _table(
        [
            "partners",
            "model",
            "implementation",
            "mechanism (σ, q, steps, C)",
            "canaries",
            "correct/guesses",
            "ε lower bound",
            "ε claimed",
            "lower/claimed",
            "result",
            "ledger entry",
        ],
        rows,
        testid="empirical-table",
    )
    return table + f'<div class="plots">{"".join(plots)}</div>'


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
    template = Template(
        resources.files("fedctr.privacy.audit").joinpath(TEMPLATE).read_text("utf-8")
    )
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
        empirical=_empirical(result),
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
