"""What an audit concluded: findings, per-partner epsilon series, model lineage, inputs.

Plain frozen data with a ``to_dict`` that is the machine-readable report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedctr.privacy.audit.recompute import ReferenceKind
from fedctr.privacy.ledger import Finding, PlatformEmpiricalAudit
from fedctr.privacy.unit import UnitOfPrivacy

# 2: no row counts; the statement lists the wire contract. 3: empirical_audits.
# 4: the unit of privacy per release (example or user).
REPORT_SCHEMA_VERSION = 4


@dataclass(frozen=True, kw_only=True)
class EpsilonRow:
    """One partner release: the claimed cumulative epsilon against the independent ones.

    Only what the partner's signed entry holds, and so only what the wire contract lets
    a partner send: the mechanism, the accounting and the update's hash, no row count.
    """

    partner_id: str
    seq: int
    run_id: str
    round: int
    accountant: str
    dp_implementation: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    update_hash: str | None  # None: spent but withheld (the update never left the node)
    delta: float
    claimed: float
    independent_rdp: float
    independent_pld: float | None
    reference: ReferenceKind
    budget_epsilon: float
    understated: bool
    over_budget: bool
    unit_of_privacy: str = "example"
    max_rows_per_unit: int = 1
    # DP bucket selection's noise multiplier and threshold (None: no selection)
    selection_noise_multiplier: float | None = None
    selection_threshold: float | None = None
    withheld: str | None = None  # why a spent round released nothing (partner-withheld)
    secure_aggregation: str = "none"  # "secagg+": the update left masked, summed unseen
    # Distributed noise: the fewest shares in a sum, and epsilon against the platform
    # colluding with noise_shares - 1 partners (None for local noise)
    noise_shares: int | None = None
    epsilon_coalition: float | None = None

    @property
    def unit(self) -> UnitOfPrivacy:
        return UnitOfPrivacy(self.unit_of_privacy, self.max_rows_per_unit)

    @property
    def reference_value(self) -> float:
        if self.reference == "pld" and self.independent_pld is not None:
            return self.independent_pld
        return self.independent_rdp

    @property
    def tightest(self) -> str:
        """The smallest figure that is a valid bound: the claim counts only if not understated."""
        figures = {"dp_accounting RDP": self.independent_rdp}
        if self.independent_pld is not None:
            figures["dp_accounting PLD"] = self.independent_pld
        if not self.understated:
            figures["claimed"] = self.claimed
        return min(figures, key=lambda k: figures[k])

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "seq": self.seq,
            "run_id": self.run_id,
            "round": self.round,
            "accountant": self.accountant,
            "dp_implementation": self.dp_implementation,
            "unit_of_privacy": self.unit_of_privacy,
            "max_rows_per_unit": self.max_rows_per_unit,
            "mechanism": {
                "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate,
                "steps": self.steps,
                "max_grad_norm": self.max_grad_norm,
                "sampling": "poisson",
                "selection": None
                if self.selection_noise_multiplier is None
                else {
                    "noise_multiplier": self.selection_noise_multiplier,
                    "threshold": self.selection_threshold,
                },
            },
            "update_hash": self.update_hash,
            "withheld": self.withheld,
            "secure_aggregation": self.secure_aggregation,
            "noise_shares": self.noise_shares,
            "epsilon_against_coalition": self.epsilon_coalition,
            "delta": self.delta,
            "epsilon_claimed": self.claimed,
            "epsilon_independent_rdp": self.independent_rdp,
            "epsilon_independent_pld": self.independent_pld,
            "reference": self.reference,
            "budget_epsilon": self.budget_epsilon,
            "tightest": self.tightest,
            "understated": self.understated,
            "over_budget": self.over_budget,
        }


@dataclass(frozen=True, kw_only=True)
class PartnerSummary:
    """One partner's ledger, summarised for the privacy statement and the plots."""

    partner_id: str
    ledger: str
    entries: int
    rows: tuple[EpsilonRow, ...]

    @property
    def final(self) -> EpsilonRow | None:
        return self.rows[-1] if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        final = self.final
        return {
            "partner_id": self.partner_id,
            "ledger": self.ledger,
            "entries": self.entries,
            "final": None if final is None else final.to_dict(),
            "releases": [row.to_dict() for row in self.rows],
        }


@dataclass(frozen=True, kw_only=True)
class LineageRow:
    """One published model, as the platform ledger records it (and its card, if found)."""

    model_version: str
    run_id: str
    rounds: int
    partners: tuple[str, ...]
    weights_sha256: str
    card_sha256: str
    publish_seq: int
    card_source: str | None
    partner_epsilons: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "run_id": self.run_id,
            "rounds": self.rounds,
            "partners": list(self.partners),
            "weights_sha256": self.weights_sha256,
            "card_sha256": self.card_sha256,
            "publish_seq": self.publish_seq,
            "card": self.card_source,
            "partner_epsilons": dict(self.partner_epsilons),
        }


@dataclass(frozen=True, kw_only=True)
class EmpiricalAuditRow:
    """One release-gate audit of the platform ledger, with what this audit recomputed.

    ``body`` holds the platform's figures; ``independent_rdp``/``independent_pld`` (the
    claimed epsilon recomputed from its mechanisms) and ``recomputed_bound`` (the lower
    bound recomputed from its counts; None when the counts cannot give one) are this
    audit's, so the report can show a flattering figure next to the true one.
    """

    source: str
    seq: int
    entry_hash: str
    body: PlatformEmpiricalAudit
    independent_rdp: float
    independent_pld: float | None
    reference: ReferenceKind
    recomputed_bound: float | None
    findings: tuple[str, ...]  # the codes of the findings about this entry

    @property
    def tightness(self) -> float | None:
        """lower bound / claimed epsilon: how much of the claim one run can confirm."""
        b = self.body
        return b.lower_bound / b.claimed_epsilon if b.claimed_epsilon > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.body.to_dict(),
            "source": self.source,
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "epsilon_independent_rdp": self.independent_rdp,
            "epsilon_independent_pld": self.independent_pld,
            "reference": self.reference,
            "lower_bound_recomputed": self.recomputed_bound,
            "tightness": self.tightness,
            "passed": self.body.passed,
            "findings": list(self.findings),
        }


@dataclass(frozen=True, kw_only=True)
class InputFile:
    """One file the audit read, with its hash so the audit can be reproduced."""

    role: str
    name: str
    sha256: str | None
    entries: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.name,
            "sha256": self.sha256,
            "entries": self.entries,
        }


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    """The audit's verdict: it passes only with no finding at all."""

    findings: tuple[Finding, ...]
    partners: tuple[PartnerSummary, ...]
    lineage: tuple[LineageRow, ...]
    inputs: tuple[InputFile, ...]
    tolerance: float
    # The release gate's audits in the platform ledger; empty when no gate ran.
    empirical_audits: tuple[EmpiricalAuditRow, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.findings

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "verdict": self.verdict,
            "passed": self.passed,
            "tolerance": self.tolerance,
            "findings": [f.to_dict() for f in self.findings],
            "partners": [p.to_dict() for p in self.partners],
            "lineage": [m.to_dict() for m in self.lineage],
            "inputs": [i.to_dict() for i in self.inputs],
            "empirical_audits": [a.to_dict() for a in self.empirical_audits],
        }


__all__ = [
    "REPORT_SCHEMA_VERSION",
    "AuditResult",
    "EmpiricalAuditRow",
    "EpsilonRow",
    "InputFile",
    "LineageRow",
    "PartnerSummary",
]
