"""A privacy statement in the style of NIST SP 800-226 ("Guidelines for Evaluating
Differential Privacy Guarantees"): unit of privacy, neighbour relation, privacy
parameters, DP variant, mechanism, accounting, trust model, exactly what each partner
released and how it is covered, and the hazards the guarantee does not cover.

Per partner it is built from what the ledgers say, not from configuration: it
describes what was actually released. What may cross a trust boundary at all (DP
releases, values public by declaration, values never sent) is generated from the
wire contract, :mod:`fedctr.privacy.wire`, never copied by hand, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedctr.privacy.audit.contract import DeclaredValue, declared_values
from fedctr.privacy.audit.result import (
    AuditResult,
    EmpiricalAuditRow,
    EpsilonRow,
    PartnerSummary,
)
from fedctr.privacy.budget import BucketSelection
from fedctr.privacy.unit import UnitOfPrivacy
from fedctr.privacy.wire import (
    CARD_FIELDS,
    ERROR_REPLY_FIELDS,
    FieldClass,
    Problem,
)

_ACCOUNTANT_NAMES = {"rdp": "Rényi DP (Opacus RDP)", "prv": "privacy random variables (Opacus PRV)"}

# Card leaves that say who took part when: disclosed without DP (see DISCLOSED_WITHOUT_DP).
_PARTICIPATION_PREFIXES = ("privacy.num_partners", "privacy.partners[].rounds_contributed")
_FAILURE_PREFIX = "training.failures[]"


def _card_paths(*prefixes: str) -> list[str]:
    return [f.key for f in CARD_FIELDS if f.key.startswith(prefixes)]


def _disclosed_without_dp() -> tuple[tuple[str, str], ...]:
    error_keys = ", ".join(f.key for f in ERROR_REPLY_FIELDS)
    problems = ", ".join(p.value for p in Problem)
    participation = ", ".join(_card_paths(*_PARTICIPATION_PREFIXES, _FAILURE_PREFIX))
    return (
        (
            "Whether a partner's data file was usable",
            "A partner that cannot train (bad data, a spent budget, a spec mismatch) answers "
            f"with an error reply carrying exactly: {error_keys}. So the platform learns, "
            "without DP, that the file failed, the fixed reason class (one of: "
            f"{problems}) and the column of the public feature spec it failed on. It never "
            "carries a row number, a cell value or a count.",
        ),
        (
            "Which rounds each partner joined",
            "The platform sees which partners answered each round, and the model card "
            f"publishes it ({participation}): participation is disclosed without DP.",
        ),
        (
            "When a reply arrives",
            "The arrival time of a partner's reply is observable by the platform (and with "
            "it, roughly, how long local work took); it is not covered by the guarantee.",
        ),
    )


DISCLOSED_WITHOUT_DP: tuple[tuple[str, str], ...] = _disclosed_without_dp()

NOT_COVERED: tuple[tuple[str, str], ...] = (
    (
        "People with many rows",
        "The unit is one row, not one person or device. A user with k rows in a partner's log "
        "is protected only at about k·ε (group privacy, with δ growing as well).",
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
        "cryptographic RNG here); floating-point effects and side channels are not "
        "accounted for.",
    ),
)

DELTA_CHECK = (
    "δ should be far below 1/n, n the number of rows of the partner's training log. n "
    "never leaves the partner (see 'not sent'), so this audit cannot check it: the "
    "partner's node checks it locally before it trains."
)


@dataclass(frozen=True, kw_only=True)
class Release:
    """One DP release of a partner (one round's model update) and its accounting."""

    run_id: str
    round: int
    update_hash: str | None  # None: spent, withheld (nothing left the node)
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    dp_implementation: str
    delta: float
    epsilon_claimed: float
    epsilon_independent_rdp: float
    epsilon_independent_pld: float | None
    unit_of_privacy: str = "example"
    selection_noise_multiplier: float | None = None
    selection_threshold: float | None = None
    withheld: str | None = None
    secure_aggregation: str = "none"
    noise_shares: int | None = None  # distributed: Skellam shares, at least this many summed
    epsilon_coalition: float | None = None

    @classmethod
    def of(cls, row: EpsilonRow) -> Release:
        return cls(
            run_id=row.run_id,
            round=row.round,
            update_hash=row.update_hash,
            noise_multiplier=row.noise_multiplier,
            sample_rate=row.sample_rate,
            steps=row.steps,
            max_grad_norm=row.max_grad_norm,
            accountant=row.accountant,
            dp_implementation=row.dp_implementation,
            delta=row.delta,
            epsilon_claimed=row.claimed,
            epsilon_independent_rdp=row.independent_rdp,
            epsilon_independent_pld=row.independent_pld,
            unit_of_privacy=row.unit_of_privacy,
            selection_noise_multiplier=row.selection_noise_multiplier,
            selection_threshold=row.selection_threshold,
            withheld=row.withheld,
            secure_aggregation=row.secure_aggregation,
            noise_shares=row.noise_shares,
            epsilon_coalition=row.epsilon_coalition,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "round": self.round,
            "update_hash": self.update_hash,
            "withheld": self.withheld,
            "secure_aggregation": self.secure_aggregation,
            "noise_shares": self.noise_shares,
            "epsilon_against_coalition": self.epsilon_coalition,
            "mechanism": {
                "name": "subsampled Gaussian (DP-SGD)"
                if self.noise_shares is None
                else f"subsampled Skellam, distributed over >= {self.noise_shares} shares",
                "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate,
                "sampling": "poisson",
                "steps": self.steps,
                "max_grad_norm": self.max_grad_norm,
                "selection": None
                if self.selection_noise_multiplier is None
                else {
                    "noise_multiplier": self.selection_noise_multiplier,
                    "threshold": self.selection_threshold,
                },
            },
            "unit_of_privacy": self.unit_of_privacy,
            "accountant": self.accountant,
            "dp_implementation": self.dp_implementation,
            "delta": self.delta,
            "epsilon_claimed": self.epsilon_claimed,
            "epsilon_independent_rdp": self.epsilon_independent_rdp,
            "epsilon_independent_pld": self.epsilon_independent_pld,
        }


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
    mechanism: str
    releases: tuple[Release, ...]
    finding_note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "sentence": self.sentence,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "accountant": self.accountant,
            "independent_rdp": self.independent_rdp,
            "independent_pld": self.independent_pld,
            "budget_epsilon": self.budget_epsilon,
            "mechanism": self.mechanism,
            "releases": [r.to_dict() for r in self.releases],
            "finding_note": self.finding_note,
        }


@dataclass(frozen=True, kw_only=True)
class PrivacyStatement:
    unit_of_privacy: str
    neighbouring: str
    variant: str
    mechanism: str
    accounting: str
    delta_check: str
    trust_model: str
    partners: tuple[PartnerGuarantee, ...]
    dp_releases: tuple[DeclaredValue, ...]
    public_by_declaration: tuple[DeclaredValue, ...]
    not_sent: tuple[DeclaredValue, ...]
    disclosed_without_dp: tuple[tuple[str, str], ...]
    not_covered: tuple[tuple[str, str], ...]
    # One sentence per configuration the release gate audited; empty when none was.
    empirical_audits: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit_of_privacy": self.unit_of_privacy,
            "neighbouring_relation": self.neighbouring,
            "variant": self.variant,
            "mechanism": self.mechanism,
            "accounting": self.accounting,
            "delta_check": self.delta_check,
            "trust_model": self.trust_model,
            "partners": [p.to_dict() for p in self.partners],
            "dp_releases": [v.to_dict() for v in self.dp_releases],
            "public_by_declaration": [v.to_dict() for v in self.public_by_declaration],
            "not_sent": [v.to_dict() for v in self.not_sent],
            "disclosed_without_dp": [{"topic": t, "why": w} for t, w in self.disclosed_without_dp],
            "not_covered": [{"topic": t, "why": w} for t, w in self.not_covered],
            "empirical_audits": list(self.empirical_audits),
        }


def _mechanisms(summary: PartnerSummary) -> str:
    settings = sorted(
        {
            (r.noise_multiplier, r.sample_rate, r.max_grad_norm, r.selection_noise_multiplier)
            for r in summary.rows
        },
        key=str,
    )
    steps = sum(r.steps for r in summary.rows)
    described = "; ".join(
        f"σ={s:g}, q={q:g}, C={c:g}"
        + ("" if sel is None else f", bucket selection σ_select={sel:g}")
        for s, q, c, sel in settings
    )
    return f"{described}; {steps} steps over {len(summary.rows)} rounds"


def _guarantee(summary: PartnerSummary) -> PartnerGuarantee | None:
    final = summary.final
    if final is None:
        return None
    accountant = _ACCOUNTANT_NAMES.get(final.accountant, final.accountant)
    pld = "n/a" if final.independent_pld is None else f"{final.independent_pld:.3f}"
    withheld = sum(1 for r in summary.rows if r.withheld is not None)
    count = len(summary.rows) - withheld
    unit = final.unit
    spent = (
        f"all {count} releases"
        if not withheld
        else f"all {count} releases and {withheld} withheld round{'s' if withheld != 1 else ''}"
    )
    sentence = (
        f"{summary.partner_id} released {count} DP model update{'s' if count != 1 else ''} "
        "(listed below), each with the values the wire contract declares public; what "
        "else the platform can observe is listed under 'Disclosed without DP'. Every "
        "update, and every model published from them, satisfies "
        f"({final.claimed:.3f}, {final.delta:g})-differential privacy for "
        f"{unit.describe()} (neighbour relation: {unit.neighbour_relation}), cumulative "
        f"over {spent}, as accounted "
        f"by {accountant} at training time. Recomputed independently with dp_accounting: "
        f"RDP ε={final.independent_rdp:.3f}, PLD ε={pld}. Budget ε={final.budget_epsilon:g}."
    )
    if final.noise_shares is not None:
        sentence = (
            f"{summary.partner_id} released {count} distributed DP update"
            f"{'s' if count != 1 else ''} (listed below): each one clipped gradient step "
            "carrying only a share of discrete (Skellam) noise, masked by secure aggregation "
            "(SecAgg+), so no single update is DP on its own. What the platform unmasks, "
            f"a sum of at least {final.noise_shares} partners' inputs (the node refuses to "
            "help unmask a smaller one), and every model published from such sums, satisfy "
            f"({final.claimed:.3f}, {final.delta:g})-differential privacy for "
            f"{unit.describe()} against the platform and the public, cumulative over {spent}, "
            "by the Skellam RDP bound with Poisson subsampling; recomputed independently "
            f"(mpmath): ε={final.independent_rdp:.3f}. The platform together with "
            f"{final.noise_shares - 1} colluding partner"
            f"{'s' if final.noise_shares != 2 else ''} (who remove their own shares) faces "
            f"ε={final.epsilon_coalition:.3f}. Budget ε={final.budget_epsilon:g}. This "
            "assumes the platform forwards partners' public keys unchanged: partners do not "
            "authenticate each other's keys, and a platform that substitutes them can unmask "
            "one partner's update, which carries only its share of the noise."
        )
    masked = sum(1 for r in summary.rows if r.secure_aggregation != "none")
    if masked and final.noise_shares is None:
        sentence += (
            f" {masked} of its updates left the node masked for secure aggregation "
            "(SecAgg+): the platform saw only their sum with other partners' updates, and "
            "the update hash above is a commitment to the masked input. This adds to the "
            "guarantee, it does not change ε: each update is DP on its own."
        )
    if withheld:
        sentence += (
            f" {withheld} round{'s were' if withheld != 1 else ' was'} spent without a "
            "release: the node stopped after its noise was drawn and before the update "
            "left, and the spend is counted all the same (marked 'withheld' below)."
        )
    notes = []
    units = {r.unit for r in summary.rows}
    if len(units) > 1:
        notes.append(
            "Its releases were made for different units of privacy (finding unit-changed): "
            "the cumulative ε above is stated for the last release's unit only, and no "
            "single guarantee covers all releases for either unit."
        )
    if final.understated:
        notes.append(
            f"The audit found this ε understated: the independent {final.reference.upper()} "
            f"bound ε={final.reference_value:.3f} is what holds."
        )
    if final.over_budget:
        notes.append(f"This is over the partner's budget of ε={final.budget_epsilon:g}.")
    return PartnerGuarantee(
        partner_id=summary.partner_id,
        sentence=sentence,
        epsilon=final.claimed,
        delta=final.delta,
        accountant=final.accountant,
        independent_rdp=final.independent_rdp,
        independent_pld=final.independent_pld,
        budget_epsilon=final.budget_epsilon,
        mechanism=_mechanisms(summary),
        releases=tuple(Release.of(r) for r in summary.rows),
        finding_note=" ".join(notes) or None,
    )


def _selection_text(selection: BucketSelection | None) -> str:
    if selection is None:
        return ""
    return f", bucket selection σ_select={selection.noise_multiplier:g}"


def mechanisms_text(audit: EmpiricalAuditRow) -> str:
    """σ, q, steps and C of an audited configuration; per round only if they vary."""
    rounds = [
        f"σ={m.noise_multiplier:g}, q={m.sample_rate:g}, {m.steps} steps, C={m.max_grad_norm:g}"
        + (
            ""
            if m.selection is None
            else f", bucket selection σ_select={m.selection.noise_multiplier:g}"
        )
        for m in audit.body.mechanisms
    ]
    if len(set(rounds)) == 1:
        return f"{rounds[0]} per round, {len(rounds)} round{'s' if len(rounds) != 1 else ''}"
    return "; ".join(f"round {i}: {text}" for i, text in enumerate(rounds, start=1))


def empirical_sentence(audit: EmpiricalAuditRow) -> str:
    """One sentence on one gate audit. It says "lower bound from one run" because that
    is all it is: a small bound does not show the true epsilon is small, and a bound
    above the claim refutes the claim only at the stated confidence."""
    b = audit.body
    outcome = (
        "which does not refute the claim"
        if b.passed
        else "which REFUTES the claim: the training does not deliver it"
    )
    return (
        f"The release gate's one-run canary audit (Steinke, Nasr & Jagielski 2023) of the "
        f"configuration of {', '.join(b.partners)} ({b.model}, {b.dp_implementation}; "
        f"{mechanisms_text(audit)}), run once on the platform's own data with {b.canaries} "
        f"canaries, gives the empirical lower bound ε ≥ {b.lower_bound:.3f} at "
        f"{b.confidence:.0%} confidence against the claimed ε={b.claimed_epsilon:.3f} "
        f"(δ={b.delta:g}), {outcome}; it is a lower bound from one run, not an estimate of "
        "the true ε."
    )


def _partners_with(result: AuditResult, unit: UnitOfPrivacy, kinds: int) -> str:
    """`` (partners a, b)`` when partners differ in unit, else nothing."""
    if kinds == 1:
        return ""
    names = [p.partner_id for p in result.partners if p.final is not None and p.final.unit == unit]
    return f" (partners {', '.join(names)})"


def privacy_statement(result: AuditResult) -> PrivacyStatement:
    """The statement for every partner with at least one release in its ledger."""
    guarantees = [_guarantee(p) for p in result.partners]
    units = {p.final.unit for p in result.partners if p.final is not None}
    if not units:
        units = {UnitOfPrivacy.example()}
    return PrivacyStatement(
        unit_of_privacy="; ".join(
            f"{u.describe()}{_partners_with(result, u, len(units))}"
            for u in sorted(units, key=lambda u: (u.kind.value, u.max_rows))
        ),
        neighbouring=(
            "; ".join(sorted({u.neighbour_relation for u in units}))
            + " (with Poisson sampling of that unit; the relation Opacus and dp_accounting "
            "both account under, the unit being what is sampled and clipped)"
        ),
        variant="approximate (ε, δ)-differential privacy, per partner, over its own data",
        mechanism=(
            "DP-SGD run by each partner on its own data: per-unit gradients (one example's, "
            "or the sum over one user's rows) clipped to L2 norm C, Gaussian noise of "
            "standard deviation σ·C added to each summed batch gradient, batches drawn by "
            "Poisson sampling of units at the declared rate q, for the declared number of "
            "steps; only the noised model update, and values public by declaration, leave "
            "the partner. User-level ε is accounted at the user sampling rate directly: no "
            "group-privacy multiplier is involved. With bucket selection (DP-AdaFEST) a step "
            "also releases each embedding row's count of units (each unit's contribution "
            "of L2 norm 1) with Gaussian noise σ_select, and only rows above the threshold "
            "receive gradient and noise; the two Gaussians on one batch are accounted as "
            "one of noise multiplier (σ^-2 + σ_select^-2)^(-1/2)"
        ),
        accounting=(
            "cumulative over every release in the partner's signed ledger, by the partner's "
            "training-time accountant (Opacus RDP or PRV), checked against an independent "
            "implementation (Google dp_accounting: RDP and PLD) within a relative tolerance "
            f"of {result.tolerance:.2%}. σ, q, steps and C are declared, not derived from "
            "the data, so ε itself reveals nothing about the rows"
        ),
        delta_check=DELTA_CHECK,
        trust_model=(
            "Partners need not trust the platform, the other partners or anyone using the "
            "published model with their rows: those see only DP updates, values public by "
            "declaration, and what is computed from them. The platform and auditors trust "
            "each partner's node to run DP-SGD as its signed ledger states, and to send "
            "nothing the wire contract does not declare. Under secure aggregation (SecAgg+) "
            "the platform sees one partner's update only as a masked input; it can unmask "
            "the sum of at least a threshold of partners, not one partner, unless it "
            "colludes with enough partners to reach the threshold or substitutes partners' "
            "public keys (partners do not authenticate each other's keys)."
        ),
        partners=tuple(g for g in guarantees if g is not None),
        dp_releases=declared_values(FieldClass.DP_RELEASE),
        public_by_declaration=declared_values(FieldClass.PUBLIC),
        not_sent=declared_values(FieldClass.NOT_SENT),
        disclosed_without_dp=DISCLOSED_WITHOUT_DP,
        not_covered=NOT_COVERED,
        empirical_audits=tuple(empirical_sentence(a) for a in result.empirical_audits),
    )


__all__ = [
    "DELTA_CHECK",
    "DISCLOSED_WITHOUT_DP",
    "NOT_COVERED",
    "PartnerGuarantee",
    "PrivacyStatement",
    "Release",
    "empirical_sentence",
    "mechanisms_text",
    "privacy_statement",
]
