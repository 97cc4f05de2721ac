"""A privacy statement in the style of NIST SP 800-226 ("Guidelines for Evaluating
Differential Privacy Guarantees"): unit of privacy, privacy parameters, DP variant,
mechanism, accounting, trust model, and the hazards the guarantee does not cover.

Built from what the ledgers say, not from configuration: it describes what was
actually released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from privacy.audit.result import AuditResult, PartnerSummary

_ACCOUNTANT_NAMES = {"rdp": "Rényi DP (Opacus RDP)", "prv": "privacy random variables (Opacus PRV)"}

NOT_COVERED: tuple[tuple[str, str], ...] = (
    (
        "People with many rows",
        "The unit is one row, not one person or device. A user with k rows in a partner's log "
        "is protected only at about k·ε (group privacy, with δ growing as well).",
    ),
    (
        "Federated evaluation metrics",
        "AUC, log loss and mean prediction that partners report each round are computed on "
        "their holdout data without noise; they are outside the DP guarantee.",
    ),
    (
        "Counts and participation",
        "Each partner's number of examples (sent in the clear for weighting), which partners "
        "took part in which round, and refusals are visible to the platform.",
    ),
    (
        "Hyper-parameter tuning and repeated runs",
        "Choices made by looking at results on the same data (learning rates, epochs, "
        "model type, re-runs) spend privacy that is not in the ledger unless each run is.",
    ),
    (
        "The feature specification",
        "The shared feature spec, hashing salt and bucket counts are configuration, assumed "
        "not derived from private data; if they were, that derivation is not covered.",
    ),
    (
        "Precomputed embeddings",
        "Text and image embedding columns are inputs: how their encoders were trained, and "
        "on what, is outside this guarantee.",
    ),
    (
        "Implementation",
        "Noise comes from PyTorch's default generator (Opacus secure_mode is off: no "
        "cryptographic RNG here), floating-point effects and side channels (timing, update "
        "size) are not accounted for.",
    ),
)


@dataclass(frozen=True, kw_only=True)
class PartnerGuarantee:
    partner_id: str
    sentence: str
    epsilon: float
    delta: float
    accountant: str
    independent_rdp: float
    independent_pld: float | None
    budget_epsilon: float
    releases: int
    mechanism: str
    delta_note: str | None


@dataclass(frozen=True, kw_only=True)
class PrivacyStatement:
    unit_of_privacy: str
    neighbouring: str
    variant: str
    mechanism: str
    accounting: str
    trust_model: str
    partners: tuple[PartnerGuarantee, ...]
    not_covered: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit_of_privacy": self.unit_of_privacy,
            "neighbouring_relation": self.neighbouring,
            "variant": self.variant,
            "mechanism": self.mechanism,
            "accounting": self.accounting,
            "trust_model": self.trust_model,
            "partners": [p.__dict__ for p in self.partners],
            "not_covered": [{"topic": t, "why": w} for t, w in self.not_covered],
        }


def _mechanisms(summary: PartnerSummary) -> str:
    settings = sorted({(r.noise_multiplier, r.sample_rate, r.max_grad_norm) for r in summary.rows})
    steps = sum(r.steps for r in summary.rows)
    described = "; ".join(f"σ={s:g}, q={q:g}, C={c:g}" for s, q, c in settings)
    return f"{described}; {steps} steps over {len(summary.rows)} rounds"


def _guarantee(summary: PartnerSummary) -> PartnerGuarantee | None:
    final = summary.final
    if final is None:
        return None
    num_examples = final.num_examples
    accountant = _ACCOUNTANT_NAMES.get(final.accountant, final.accountant)
    pld = "n/a" if final.independent_pld is None else f"{final.independent_pld:.3f}"
    sentence = (
        f"Every update {summary.partner_id} sent to the platform, and every model published "
        f"from them, satisfies ({final.claimed:.3f}, {final.delta:g})-differential privacy "
        f"for each row of {summary.partner_id}'s conversion log, cumulative over its "
        f"{len(summary.rows)} releases, as accounted by {accountant} at training time. "
        f"Recomputed independently with dp_accounting: RDP ε={final.independent_rdp:.3f}, "
        f"PLD ε={pld}. Budget ε={final.budget_epsilon:g}."
    )
    notes = []
    if final.understated:
        notes.append(
            f"The audit found this ε understated: the independent {final.reference.upper()} "
            f"bound ε={final.reference_value:.3f} is what holds."
        )
    if final.over_budget:
        notes.append(f"This is over the partner's budget of ε={final.budget_epsilon:g}.")
    if final.delta * num_examples >= 1:
        notes.append(
            f"δ={final.delta:g} is not below 1/n for n={num_examples} rows: such a δ permits "
            "releasing a row outright; choose δ ≪ 1/n."
        )
    note = " ".join(notes) or None
    return PartnerGuarantee(
        partner_id=summary.partner_id,
        sentence=sentence,
        epsilon=final.claimed,
        delta=final.delta,
        accountant=final.accountant,
        independent_rdp=final.independent_rdp,
        independent_pld=final.independent_pld,
        budget_epsilon=final.budget_epsilon,
        releases=len(summary.rows),
        mechanism=_mechanisms(summary),
        delta_note=note,
    )


def privacy_statement(result: AuditResult) -> PrivacyStatement:
    """The statement for every partner with at least one release in its ledger."""
    guarantees = [_guarantee(p) for p in result.partners]
    return PrivacyStatement(
        unit_of_privacy=(
            "one example: one row of a partner's conversion log (event-level privacy)"
        ),
        neighbouring="add or remove one row (Poisson sampling; Opacus and dp_accounting agree)",
        variant="approximate (ε, δ)-differential privacy, per partner, over its own data",
        mechanism=(
            "DP-SGD run by each partner on its own data: per-example gradients clipped to L2 "
            "norm C, Gaussian noise of standard deviation σ·C added to each summed batch "
            "gradient, batches drawn by Poisson sampling at rate q; only the noised model "
            "update leaves the partner"
        ),
        accounting=(
            "cumulative over every release in the partner's signed ledger, by the partner's "
            "training-time accountant (Opacus RDP or PRV), checked against an independent "
            "implementation (Google dp_accounting: RDP and PLD) within a relative tolerance "
            f"of {result.tolerance:.2%}"
        ),
        trust_model=(
            "Partners need not trust the platform, the other partners or anyone using the "
            "published model with their rows: those see only DP updates and what is computed "
            "from them. The platform and auditors trust each partner's node to run DP-SGD as "
            "its signed ledger states."
        ),
        partners=tuple(g for g in guarantees if g is not None),
        not_covered=NOT_COVERED,
    )


__all__ = ["NOT_COVERED", "PartnerGuarantee", "PrivacyStatement", "privacy_statement"]
