"""Checks of the release gate's empirical audits and of the card's statements of them.

Before publishing, the platform runs a one-run canary audit (Steinke, Nasr &
Jagielski 2023) of each DP-SGD configuration its partners declared, and signs a
``platform-empirical-audit`` entry with the outcome. That entry is the platform's
word about itself, so nothing in it is taken on trust here:

* a lower bound above the claimed epsilon refutes the claim: the training code does
  not deliver the epsilon its accountant states (``empirical-claim-refuted``);
* the claimed epsilon is recomputed from the entry's mechanisms with the independent
  accountant (:mod:`fedctr.privacy.audit.recompute`): an inflated claim would make the
  gate easy to pass (``empirical-epsilon-mismatch``);
* the lower bound is recomputed from the counts (``empirical-bound-mismatch``), so a
  platform cannot write a flattering bound;
* the audited mechanisms are those the partners' accepted updates of that run record
  (``empirical-config-mismatch``): auditing a noisier configuration proves nothing;
* a card may name only passed audits that the platform ledger holds, with the same
  figures (``card-empirical-unbacked``, ``card-empirical-mismatch``), and no model may
  be published from a run whose audit was refuted (``empirical-refuted-published``).

Recomputing the bound. The gate's bound is :func:`epsilon_lower_bound` over the
default guess grid, each grid point tested at ``(1 - confidence) / len(grid)``
(Bonferroni). The entry records the counts of the grid point that gave the bound, so
the bound follows from them at the corrected level; the grid depends only on the
number of canaries, and a guess count off the grid would mean the guesses were picked
after looking at the scores, which the correction does not cover.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from fedctr.privacy.audit.cards import CardClaims
from fedctr.privacy.audit.loading import Recorded
from fedctr.privacy.audit.one_run import (
    CanaryScoreError,
    default_guess_grid,
    epsilon_lower_bound_from_counts,
)
from fedctr.privacy.audit.partner_checks import same
from fedctr.privacy.audit.recompute import independent_epsilons, understated
from fedctr.privacy.audit.result import EmpiricalAuditRow
from fedctr.privacy.card import EmpiricalAuditStatement
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.ledger import (
    Finding,
    FindingCode,
    PlatformEmpiricalAudit,
    PlatformPublish,
    PlatformReport,
)
from fedctr.privacy.ledger.bodies import mechanism_dict

# brentq stops at xtol 1e-6; two honest computations of one bound agree far closer.
BOUND_TOLERANCE = 1e-4

Audits = Sequence[Recorded[PlatformEmpiricalAudit]]


def bound_from_counts(audit: PlatformEmpiricalAudit) -> float:
    """The lower bound the entry's counts give under the gate's procedure.

    Raises :class:`CanaryScoreError` when ``guesses`` is no point of the default grid
    for ``canaries`` canaries, and :class:`InvalidPrivacyParameter` for a confidence the
    bound is not defined at.
    """
    grid = default_guess_grid(audit.canaries)
    if audit.guesses not in {k_plus + k_minus for k_plus, k_minus in grid}:
        raise CanaryScoreError(
            f"{audit.guesses} guesses is no point of the guess grid for {audit.canaries} "
            "canaries: the guess count was chosen outside the corrected procedure"
        )
    level = (1.0 - audit.confidence) / len(grid)
    return epsilon_lower_bound_from_counts(
        m=audit.canaries,
        guesses=audit.guesses,
        correct=audit.correct,
        confidence=1.0 - level,
        delta=audit.delta,
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _describe(body: PlatformEmpiricalAudit) -> str:
    return f"partners {', '.join(body.partners)} ({body.model}, {body.dp_implementation})"


def _declared_mechanisms(
    reports: Sequence[Recorded[PlatformReport]], run_id: str, partner_id: str
) -> tuple[dict[str, object], ...]:
    """The mechanisms of the partner's accepted updates in ``run_id``, by round."""
    bodies = sorted((r.body for r in reports), key=lambda b: b.round)
    return tuple(
        mechanism_dict(b.mechanism)
        for b in bodies
        if b.accepted and b.run_id == run_id and b.partner_id == partner_id
    )


def check_empirical_audits(
    audits: Audits,
    reports: Sequence[Recorded[PlatformReport]],
    publishes: Sequence[Recorded[PlatformPublish]],
    *,
    tolerance: float,
) -> tuple[list[EmpiricalAuditRow], list[Finding]]:
    """Findings about each gate entry, and each entry as a report row."""
    findings: list[Finding] = []
    rows: list[EmpiricalAuditRow] = []
    published: defaultdict[str, list[Recorded[PlatformPublish]]] = defaultdict(list)
    for pub in publishes:
        published[pub.body.run_id].append(pub)
    for rec in audits:
        body = rec.body
        own: list[Finding] = []
        what = _describe(body)
        if not body.passed:
            own.append(
                rec.finding(
                    FindingCode.EMPIRICAL_CLAIM_REFUTED,
                    f"the release gate's audit of {what} refutes the claimed epsilon "
                    f"{body.claimed_epsilon:.4f}: empirical lower bound {body.lower_bound:.4f} "
                    f"at {body.confidence:.0%} confidence ({body.correct}/{body.guesses} "
                    f"guesses right on {body.canaries} canaries); the training does not "
                    "deliver the epsilon its accountant states",
                )
            )
            for pub in published.get(body.run_id, ()):
                own.append(
                    pub.finding(
                        FindingCode.EMPIRICAL_REFUTED_PUBLISHED,
                        f"model {pub.body.model_version} of run {body.run_id} was published "
                        f"although the release gate refuted the claim of {what} "
                        f"({rec.source} seq {rec.entry.seq})",
                    )
                )
        independent = independent_epsilons([(m, body.delta) for m in body.mechanisms])[-1]
        reference, value = independent.reference(body.accountant)
        # Below the accountant of its kind: understated, as for a partner release. Above
        # RDP, the loosest sound figure: inflated, and an inflated claim passes the gate
        # more easily (an honest PRV claim lies between PLD and RDP).
        low = understated(body.claimed_epsilon, value, tolerance=tolerance)
        high = body.claimed_epsilon > independent.rdp * (1.0 + tolerance)
        if low or high:
            own.append(
                rec.finding(
                    FindingCode.EMPIRICAL_EPSILON_MISMATCH,
                    f"the audit of {what} was held against a claimed epsilon of "
                    f"{body.claimed_epsilon:.4f} ({body.accountant}), "
                    f"{'below' if low else 'above'} what its mechanisms give by the "
                    f"independent dp_accounting accountant (RDP {independent.rdp:.4f}, PLD "
                    f"{_fmt(independent.pld)}; checked against {reference.upper()} "
                    f"{value:.4f}) by more than the {tolerance:.2%} tolerance",
                )
            )
        recomputed: float | None
        try:
            recomputed = bound_from_counts(body)
        except (CanaryScoreError, InvalidPrivacyParameter) as exc:
            recomputed = None
            own.append(
                rec.finding(
                    FindingCode.EMPIRICAL_BOUND_MISMATCH,
                    f"the lower bound {body.lower_bound:.4f} of {what} cannot be recomputed "
                    f"from its counts: {exc}",
                )
            )
        if recomputed is not None and abs(recomputed - body.lower_bound) > BOUND_TOLERANCE:
            own.append(
                rec.finding(
                    FindingCode.EMPIRICAL_BOUND_MISMATCH,
                    f"states the lower bound {body.lower_bound:.4f} for {what}, but "
                    f"{body.correct}/{body.guesses} correct guesses on {body.canaries} "
                    f"canaries give {recomputed:.4f} at {body.confidence:.0%} confidence "
                    f"(delta {body.delta:g}, Bonferroni over the guess grid)",
                )
            )
        audited = tuple(mechanism_dict(m) for m in body.mechanisms)
        for partner_id in body.partners:
            if _declared_mechanisms(reports, body.run_id, partner_id) != audited:
                own.append(
                    rec.finding(
                        FindingCode.EMPIRICAL_CONFIG_MISMATCH,
                        f"audited mechanisms (sigma, q, steps, C per round) differ from those "
                        f"of {partner_id}'s accepted updates in run {body.run_id} as the "
                        "platform recorded them: the gate did not audit what was declared",
                    )
                )
        findings += own
        rows.append(
            EmpiricalAuditRow(
                source=rec.source,
                seq=rec.entry.seq,
                entry_hash=rec.entry.hash,
                body=body,
                independent_rdp=independent.rdp,
                independent_pld=independent.pld,
                reference=reference,
                recomputed_bound=recomputed,
                findings=tuple(dict.fromkeys(str(f.code) for f in own)),
            )
        )
    return rows, findings


def _statement_differences(
    statement: EmpiricalAuditStatement, body: PlatformEmpiricalAudit
) -> list[str]:
    diffs = [
        f"{name} {mine} vs {theirs}"
        for name, mine, theirs in (
            ("partners", sorted(statement.partners), sorted(body.partners)),
            ("model", statement.model, body.model),
            ("dp_implementation", statement.dp_implementation, body.dp_implementation),
            ("canaries", statement.canaries, body.canaries),
            ("unit_of_privacy", statement.unit_of_privacy, body.unit_of_privacy),
        )
        if mine != theirs
    ]
    diffs += [
        f"{name} {mine:.6g} vs {theirs:.6g}"
        for name, mine, theirs in (
            ("lower_bound", statement.lower_bound, body.lower_bound),
            ("claimed_epsilon", statement.claimed_epsilon, body.claimed_epsilon),
            ("confidence", statement.confidence, body.confidence),
        )
        if not same(mine, theirs)
    ]
    return diffs


def check_card_audits(cards: Sequence[CardClaims], audits: Audits) -> list[Finding]:
    """Each ``privacy.empirical_audits[]`` of a card is a passed gate entry of the
    platform ledger for the card's run, stated with that entry's figures, and together
    they cover every partner the card credits."""
    findings: list[Finding] = []
    by_hash: Mapping[str, Recorded[PlatformEmpiricalAudit]] = {r.entry.hash: r for r in audits}
    for claims in cards:
        card = claims.card
        if card.empirical_audits is None:
            continue

        def found(code: FindingCode, message: str, claims: CardClaims = claims) -> None:
            findings.append(Finding(code=code, source=claims.source, message=message))

        covered: set[str] = set()
        for i, statement in enumerate(card.empirical_audits):
            where = f"privacy.empirical_audits[{i}]"
            stated = claims.empirical_passed[i] if i < len(claims.empirical_passed) else None
            if stated is not statement.passed:
                found(
                    FindingCode.CARD_EMPIRICAL_MISMATCH,
                    f"{where} says passed={stated!r}, but its lower bound "
                    f"{statement.lower_bound:.4f} and claim {statement.claimed_epsilon:.4f} "
                    f"mean passed={statement.passed}",
                )
            rec = by_hash.get(statement.ledger_entry)
            if rec is None:
                found(
                    FindingCode.CARD_EMPIRICAL_UNBACKED,
                    f"{where} names ledger entry {statement.ledger_entry[:12]}, which is no "
                    "platform-empirical-audit entry of the platform ledger: the stated audit "
                    "is not on record",
                )
                continue
            covered.update(statement.partners)
            body = rec.body
            at = f"{rec.source} seq {rec.entry.seq}"
            diffs = _statement_differences(statement, body)
            if body.run_id != card.run_id:
                diffs.append(f"run {card.run_id} vs {body.run_id}")
            if diffs:
                found(
                    FindingCode.CARD_EMPIRICAL_MISMATCH,
                    f"{where} differs from the audit it names ({at}): {', '.join(diffs)}",
                )
            if not body.passed:
                found(
                    FindingCode.EMPIRICAL_REFUTED_PUBLISHED,
                    f"{where} names the audit {at}, which refuted the claimed epsilon "
                    f"{body.claimed_epsilon:.4f} with a lower bound of {body.lower_bound:.4f}: "
                    "the model was published past a failed release gate",
                )
        uncovered = sorted({p.partner_id for p in card.partners} - covered)
        if uncovered:
            found(
                FindingCode.CARD_EMPIRICAL_MISMATCH,
                f"states empirical audits, but none on record covers {', '.join(uncovered)}",
            )
    return findings


__all__ = [
    "BOUND_TOLERANCE",
    "bound_from_counts",
    "check_card_audits",
    "check_empirical_audits",
]
