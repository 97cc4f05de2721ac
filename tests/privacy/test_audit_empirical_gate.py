"""Spec of the audit's side of the release gate: every ``platform-empirical-audit`` entry is
checked (refuted claim, claimed epsilon, bound from its counts, audited configuration), every
card statement of one is held against the entry it names, and the report and privacy
statement show each audit with its canary score plot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from fedctr.privacy.audit import AuditResult, audit_directories, render_html, report_dict
from fedctr.privacy.audit.empirical import bound_from_counts
from fedctr.privacy.audit.plots import EXCLUDED_COLOR, INCLUDED_COLOR
from fedctr.privacy.ledger import (
    PLATFORM_OWNER,
    FindingCode,
    Ledger,
    LedgerWriteRefused,
    PlatformEmpiricalAudit,
    read_ledger,
)
from tests.privacy.test_audit import ACME, GLOBEX  # the partners of the audit's own spec
from tests.support.audit_run import SyntheticGate, SyntheticRun, write_synthetic_run

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# A small signal: a positive bound well below the claimed ~0.59 (acme) and ~0.44 (globex).
HONEST = (
    SyntheticGate(partners=("acme",), signal=0.3),
    SyntheticGate(partners=("globex",), signal=0.15, seed=1),
)


def build(tmp_path, *, gates=HONEST, **kwargs: Any) -> SyntheticRun:
    return write_synthetic_run(tmp_path, partners=[ACME, GLOBEX], rounds=3, gates=gates, **kwargs)


def audit(run: SyntheticRun) -> AuditResult:
    return audit_directories(
        ledgers_dir=run.ledgers_dir, keys_dir=run.keys_dir, registry_dir=run.registry_dir
    )


def codes(result: AuditResult) -> list[str]:
    return sorted(str(f.code) for f in result.findings)


def gate_entries(run: SyntheticRun) -> list[PlatformEmpiricalAudit]:
    read = read_ledger(run.ledger(PLATFORM_OWNER))
    return [e.parsed_body() for e in read.entries if e.kind == "platform-empirical-audit"]


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> SyntheticRun:
    return build(tmp_path_factory.mktemp("gate-honest"))


@pytest.fixture(scope="module")
def refuted(tmp_path_factory) -> SyntheticRun:
    """acme's training leaks (a strong canary signal); globex's is fine."""
    return build(
        tmp_path_factory.mktemp("gate-refuted"),
        gates=(SyntheticGate(partners=("acme",), signal=1.0), HONEST[1]),
    )


# ---- a passing gate -------------------------------------------------------------------------
def test_a_passing_gate_passes_and_each_audit_is_reported(honest):
    """Both audits pass, their bound follows from their counts, and the report row holds the
    recorded and recomputed figures."""
    result = audit(honest)

    assert result.findings == ()
    assert result.verdict == "PASS"
    rows = {a.body.partners: a for a in result.empirical_audits}
    assert set(rows) == {("acme",), ("globex",)}
    acme = rows[("acme",)]
    body = acme.body
    assert 0 < body.lower_bound < body.claimed_epsilon
    assert acme.recomputed_bound == pytest.approx(body.lower_bound, abs=1e-6)
    assert acme.independent_rdp == pytest.approx(body.claimed_epsilon, rel=0.01)
    assert acme.tightness == pytest.approx(body.lower_bound / body.claimed_epsilon)
    assert body.passed and acme.findings == ()


def test_the_html_has_an_empirical_section_with_the_bound_next_to_the_claim_and_a_plot(honest):
    result = audit(honest)
    page = render_html(result, generated_at=WHEN)

    assert 'data-testid="empirical-audit"' in page
    assert 'data-testid="empirical-table"' in page
    for i, a in enumerate(result.empirical_audits):
        b = a.body
        assert f'data-testid="canary-plot-{i}"' in page
        assert f"{b.lower_bound:.4f} at 95%" in page
        assert f"{b.claimed_epsilon:.4f} ({b.accountant}" in page
        assert f"{a.tightness:.3f}" in page
        assert f"{b.correct}/{b.guesses}" in page
    assert "σ=2.5, q=0.02, 100 steps, C=1 per round, 3 rounds" in page
    assert '<g data-series="included">' in page and '<g data-series="excluded">' in page
    assert INCLUDED_COLOR in page and EXCLUDED_COLOR in page
    assert "REFUTED" not in page
    assert "<script" not in page.lower()


def test_the_statement_says_it_is_a_lower_bound_from_one_run(honest):
    result = audit(honest)
    report = report_dict(result, generated_at=WHEN)

    sentences = report["privacy_statement"]["empirical_audits"]
    assert len(sentences) == 2
    for sentence in sentences:
        assert "lower bound from one run, not an estimate" in sentence
        assert "does not refute the claim" in sentence
    assert "acme (lr, opacus-ghost" in sentences[0]
    assert [a["partners"] for a in report["empirical_audits"]] == [["acme"], ["globex"]]
    assert report["empirical_audits"][0]["histogram"]["included"]
    assert 'data-testid="statement-empirical"' in render_html(result, generated_at=WHEN)


def test_without_a_gate_the_section_says_no_empirical_audit_was_run(tmp_path):
    result = audit(build(tmp_path, gates=None))

    assert result.passed and result.empirical_audits == ()
    page = render_html(result, generated_at=WHEN)
    assert 'data-testid="no-empirical-audit"' in page
    assert "No empirical audit was run" in page
    assert "statement-empirical" not in page
    assert report_dict(result, generated_at=WHEN)["privacy_statement"]["empirical_audits"] == []


# ---- a refuted claim --------------------------------------------------------------------------
def test_a_refuted_claim_fails_the_audit_naming_partners_implementation_bound_and_claim(refuted):
    result = audit(refuted)

    assert result.verdict == "FAIL"
    (finding,) = [f for f in result.findings if f.code == FindingCode.EMPIRICAL_CLAIM_REFUTED]
    body = gate_entries(refuted)[0]
    assert body.lower_bound > body.claimed_epsilon
    assert finding.source == "platform.jsonl" and finding.entry is not None
    for text in ("acme", "opacus-ghost", f"{body.lower_bound:.4f}", f"{body.claimed_epsilon:.4f}"):
        assert text in finding.message
    # This platform published anyway, and its card leaves acme out of the audits it names.
    assert FindingCode.EMPIRICAL_REFUTED_PUBLISHED in {f.code for f in result.findings}
    page = render_html(result, generated_at=WHEN)
    assert "REFUTED" in page and "empirical-claim-refuted" in page
    assert (
        "REFUTES the claim"
        in report_dict(result, generated_at=WHEN)["privacy_statement"]["empirical_audits"][0]
    )


# ---- the entry's own figures ------------------------------------------------------------------
def test_a_bound_that_does_not_follow_from_its_counts_is_a_finding(tmp_path):
    """A platform writing a flattering bound (here 0) for a leaking training."""
    run = build(
        tmp_path, gates=(SyntheticGate(partners=("acme",), signal=1.0, stated_bound=0.0), HONEST[1])
    )
    result = audit(run)

    (finding,) = [f for f in result.findings if f.code == FindingCode.EMPIRICAL_BOUND_MISMATCH]
    true_bound = bound_from_counts(gate_entries(run)[0])
    assert true_bound > 1.0
    assert f"{true_bound:.4f}" in finding.message and "0.0000" in finding.message
    row = result.empirical_audits[0]
    assert row.recomputed_bound == pytest.approx(true_bound)
    assert "empirical-bound-mismatch" in row.findings


def test_an_inflated_claimed_epsilon_is_a_finding(tmp_path):
    """A claim 50% above what the mechanisms give would pass the gate too easily."""
    run = build(tmp_path, gates=(SyntheticGate(partners=("acme",), claim_scale=1.5), HONEST[1]))
    result = audit(run)

    assert codes(result).count("empirical-epsilon-mismatch") == 1
    (finding,) = result.findings
    assert "above" in finding.message and "acme" in finding.message


def test_an_audit_of_another_configuration_than_declared_is_a_finding(tmp_path):
    """One audit of acme's mechanisms stated for globex too, which trained with another σ."""
    result = audit(build(tmp_path, gates=(SyntheticGate(partners=("acme", "globex")),)))

    (finding,) = [f for f in result.findings if f.code == FindingCode.EMPIRICAL_CONFIG_MISMATCH]
    assert "globex" in finding.message


def test_the_ledger_refuses_a_second_audit_of_the_same_run_and_partners(honest, tmp_path):
    """A platform cannot re-run a failed audit until one passes."""
    body = gate_entries(honest)[0]
    key = honest.platform_key
    with Ledger.open(tmp_path / "platform.jsonl", signing_key=key, owner=PLATFORM_OWNER) as ledger:
        ledger.append(body)
        with pytest.raises(LedgerWriteRefused):
            ledger.append(body)


# ---- the card's statements --------------------------------------------------------------------
def _audits(card: dict[str, Any]) -> list[dict[str, Any]]:
    return card["privacy"]["empirical_audits"]


def _flatter(card: dict[str, Any]) -> None:
    _audits(card)[0]["lower_bound"] = 0.001


def _unknown_entry(card: dict[str, Any]) -> None:
    _audits(card)[0]["ledger_entry"] = "ab" * 32


def _passed_although_refuted(card: dict[str, Any]) -> None:
    audit = _audits(card)[0]
    audit["lower_bound"] = audit["claimed_epsilon"] * 2
    audit["passed"] = True


@pytest.mark.parametrize(
    ("edit", "code", "text"),
    [
        (_flatter, FindingCode.CARD_EMPIRICAL_MISMATCH, "lower_bound 0.001"),
        (_unknown_entry, FindingCode.CARD_EMPIRICAL_UNBACKED, "abababababab"),
        (_passed_although_refuted, FindingCode.CARD_EMPIRICAL_MISMATCH, "passed"),
    ],
)
def test_a_card_statement_the_ledger_does_not_back_is_a_finding(tmp_path, edit, code, text):
    """The platform signs and publishes a card whose audit statement differs from its own
    gate entry, or names none."""
    result = audit(build(tmp_path, edit_card=edit))

    assert result.verdict == "FAIL"
    matching = [f for f in result.findings if f.code == code]
    assert matching and all(f.source.endswith("card.json") for f in matching)
    assert any(text in f.message for f in matching)


def test_a_card_without_an_audit_for_a_credited_partner_is_a_finding(tmp_path):
    result = audit(build(tmp_path, edit_card=lambda card: _audits(card).pop()))

    (finding,) = result.findings
    assert finding.code == FindingCode.CARD_EMPIRICAL_MISMATCH
    assert "globex" in finding.message


def test_the_json_report_lists_each_audit(honest, tmp_path):
    report = json.loads(json.dumps(report_dict(audit(honest), generated_at=WHEN)))

    (acme, _) = report["empirical_audits"]
    for key in ("lower_bound", "lower_bound_recomputed", "claimed_epsilon", "tightness"):
        assert isinstance(acme[key], float)
    assert acme["passed"] is True and acme["canaries"] == 1000
    assert acme["mechanisms"][0]["noise_multiplier"] == 2.5
