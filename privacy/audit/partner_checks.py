"""Checks inside one partner's ledger: spending, budget, and independent recomputation.

A partner ledger's ``epsilon_after`` is cumulative over every release in it (the
partner's whole participation with that data), so the independent accountant
composes every release in ledger order and compares the result after each one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fedctr.privacy.audit.loading import Recorded
from fedctr.privacy.audit.recompute import independent_epsilons, understated
from fedctr.privacy.audit.result import EpsilonRow, PartnerSummary
from fedctr.privacy.distributed.accounting import epsilon as distributed_epsilon
from fedctr.privacy.distributed.mechanism import SkellamRound, skellam_of
from fedctr.privacy.ledger import Finding, FindingCode, PartnerRelease, PartnerWithheld

_REL = 1e-9  # two figures that should be the same number


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def check_partner(
    partner_id: str,
    source: str,
    entries: int,
    releases: Sequence[Recorded[PartnerRelease | PartnerWithheld]],
    *,
    tolerance: float,
) -> tuple[PartnerSummary, list[Finding]]:
    """Findings about one partner's spends, and the claimed/independent epsilon series.

    ``releases`` are its ``partner-release`` and ``partner-withheld`` entries in ledger
    order: a withheld round released nothing but its noise was drawn, so it is composed
    like a release. A round may be withheld and then released (trained again after a
    restart); two releases of one round are a finding.
    """
    findings: list[Finding] = []
    seen: dict[tuple[str, str, int], int] = {}
    prev: Recorded[PartnerRelease | PartnerWithheld] | None = None
    for rec in releases:
        body = rec.body
        key = (body.KIND, body.run_id, body.round)
        if key in seen:
            findings.append(
                rec.finding(
                    FindingCode.DUPLICATE_ROUND,
                    f"a second release for run {body.run_id} round {body.round} "
                    f"(the first is seq {seen[key]})",
                )
            )
        seen.setdefault(key, rec.entry.seq)
        if prev is not None:
            if body.epsilon_after < prev.body.epsilon_after * (1 - _REL):
                findings.append(
                    rec.finding(
                        FindingCode.EPSILON_DECREASED,
                        f"cumulative epsilon fell from {prev.body.epsilon_after:.4f} "
                        f"(seq {prev.entry.seq}) to {body.epsilon_after:.4f}: spending "
                        "never decreases",
                    )
                )
            if body.unit_of_privacy != prev.body.unit_of_privacy:
                findings.append(
                    rec.finding(
                        FindingCode.UNIT_CHANGED,
                        f"unit of privacy changed from {prev.body.unit_of_privacy} (seq "
                        f"{prev.entry.seq}) to {body.unit_of_privacy}: one cumulative epsilon "
                        "cannot cover releases made for different neighbour relations",
                    )
                )
            if body.budget != prev.body.budget:
                findings.append(
                    rec.finding(
                        FindingCode.BUDGET_CHANGED,
                        f"budget changed from epsilon={prev.body.budget.epsilon}, "
                        f"delta={prev.body.budget.delta} (seq {prev.entry.seq}) to "
                        f"epsilon={body.budget.epsilon}, delta={body.budget.delta}",
                    )
                )
        if body.budget.exceeded_by(body.epsilon_after):
            findings.append(
                rec.finding(
                    FindingCode.BUDGET_OVERRUN,
                    f"claimed epsilon {body.epsilon_after:.4f} is over the partner's budget "
                    f"of {body.budget.epsilon} (delta {body.budget.delta})",
                )
            )
        prev = rec

    independent = independent_epsilons([(r.body.mechanism, r.body.delta) for r in releases])
    rows: list[EpsilonRow] = []
    shared: list[SkellamRound] = []  # distributed releases so far, for the coalition figure
    for rec, ind in zip(releases, independent, strict=True):
        body = rec.body
        coalition = None
        this = skellam_of(body.mechanism)
        if this is not None:
            shared.append(this)
            coalition = distributed_epsilon(shared, body.delta, colluding=this.min_shares - 1)
        reference, value = ind.reference(body.accountant)
        low = understated(body.epsilon_after, value, tolerance=tolerance)
        over = body.budget.exceeded_by(value, rel_tol=tolerance)
        if low:
            findings.append(
                rec.finding(
                    FindingCode.EPSILON_UNDERSTATED,
                    f"claimed epsilon {body.epsilon_after:.4f} ({body.accountant}) is below the "
                    f"independent dp_accounting {reference.upper()} result {value:.4f} by "
                    f"{(value - body.epsilon_after) / value:.2%}, more than the "
                    f"{tolerance:.2%} tolerance (RDP {_fmt(ind.rdp)}, PLD {_fmt(ind.pld)})",
                )
            )
        if over and not body.budget.exceeded_by(body.epsilon_after):
            findings.append(
                rec.finding(
                    FindingCode.BUDGET_OVERRUN,
                    f"independent {reference.upper()} epsilon {value:.4f} is over the budget of "
                    f"{body.budget.epsilon} by more than the {tolerance:.2%} tolerance",
                )
            )
        rows.append(
            EpsilonRow(
                partner_id=partner_id,
                seq=rec.entry.seq,
                run_id=body.run_id,
                round=body.round,
                accountant=body.accountant,
                dp_implementation=body.dp_implementation,
                unit_of_privacy=body.unit_of_privacy,
                max_rows_per_unit=body.max_rows_per_unit,
                selection_noise_multiplier=None
                if body.mechanism.selection is None
                else body.mechanism.selection.noise_multiplier,
                selection_threshold=None
                if body.mechanism.selection is None
                else body.mechanism.selection.threshold,
                noise_multiplier=body.mechanism.noise_multiplier,
                sample_rate=body.mechanism.sample_rate,
                steps=body.mechanism.steps,
                max_grad_norm=body.mechanism.max_grad_norm,
                update_hash=body.update_hash if isinstance(body, PartnerRelease) else None,
                withheld=body.reason if isinstance(body, PartnerWithheld) else None,
                secure_aggregation=body.secure_aggregation
                if isinstance(body, PartnerRelease)
                else "none",
                noise_shares=None
                if body.mechanism.distributed is None
                else body.mechanism.distributed.min_shares,
                epsilon_coalition=coalition,
                delta=body.delta,
                claimed=body.epsilon_after,
                independent_rdp=ind.rdp,
                independent_pld=ind.pld,
                reference=reference,
                budget_epsilon=body.budget.epsilon,
                understated=low,
                over_budget=over or body.budget.exceeded_by(body.epsilon_after),
            )
        )
    summary = PartnerSummary(
        partner_id=partner_id, ledger=source, entries=entries, rows=tuple(rows)
    )
    return summary, findings


def same(a: float, b: float) -> bool:
    """Two recorded copies of one number (JSON round-trips floats exactly)."""
    return math.isclose(a, b, rel_tol=_REL, abs_tol=0.0)


__all__ = ["check_partner", "same"]
