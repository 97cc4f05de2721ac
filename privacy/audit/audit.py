"""``run_audit``: verify every ledger, cross-check them and the cards, recompute epsilon,
and check the release gate's empirical audits (:mod:`fedctr.privacy.audit.empirical`).

Every card leaf and every ledger body is also held against the wire contract
(:mod:`fedctr.privacy.wire`): an undeclared card value is an ``undeclared-card-field``
finding, an undeclared ledger field a ``schema-invalid`` one; neither repeats the value.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.privacy.audit.cards import CardVerifier
from fedctr.privacy.audit.contract import withhold_undeclared
from fedctr.privacy.audit.cross_checks import (
    check_base_models,
    check_cards,
    check_publishes,
    check_reports,
    lineage,
)
from fedctr.privacy.audit.empirical import check_card_audits, check_empirical_audits
from fedctr.privacy.audit.loading import LoadedLedger, Recorded, load_cards, load_ledger
from fedctr.privacy.audit.partner_checks import check_partner
from fedctr.privacy.audit.result import AuditResult, PartnerSummary
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.ledger import (
    PLATFORM_OWNER,
    Finding,
    PartnerRelease,
    PartnerWithheld,
    PlatformEmpiricalAudit,
    PlatformPublish,
    PlatformReport,
)
from fedctr.privacy.ledger.bodies import ident

logger = logging.getLogger(__name__)


def _of(ledger: LoadedLedger, kind: type) -> list[Recorded]:  # type: ignore[type-arg]
    return [r for r in ledger.records if isinstance(r.body, kind)]


def run_audit(
    *,
    partner_ledgers: Mapping[str, Path],
    partner_keys: Mapping[str, Ed25519PublicKey],
    platform_ledger: Path,
    platform_key: Ed25519PublicKey | None,
    model_cards: Sequence[Path] = (),
    card_verifier: CardVerifier | None = None,
    tolerance: float = 0.01,
) -> AuditResult:
    """Audit a federation's ledgers and published model cards.

    Parameters
    ----------
    partner_ledgers, partner_keys
        Ledger file and Ed25519 public key of each partner, by partner id.
    platform_ledger, platform_key
        The platform's ledger (reports, publishes, release-gate audits) and its public key.
    model_cards
        Version directories of published models (each with ``card.json``).
    card_verifier
        Returns a version directory's card once its signature verified (e.g. the
        registry's ``verify_card`` bound to the platform key); required with cards.
    tolerance
        Relative slack when comparing a claimed epsilon with the independent one.

    Returns
    -------
    AuditResult
        Passes only if there is no finding at all. Entries embedded in findings have
        the values of undeclared body fields withheld.
    """
    if isinstance(tolerance, bool) or not (
        isinstance(tolerance, int | float) and math.isfinite(tolerance) and 0 <= tolerance < 1
    ):
        raise InvalidPrivacyParameter(f"tolerance must be in [0, 1), got {tolerance!r}")
    for partner_id in partner_ledgers:
        ident(partner_id, "partner id")
        if partner_id == PLATFORM_OWNER:
            raise ValueError(f"{PLATFORM_OWNER!r} is not a partner id")

    findings: list[Finding] = []
    platform = load_ledger(
        Path(platform_ledger), platform_key, owner=PLATFORM_OWNER, role="platform-ledger"
    )
    findings += platform.findings
    partners = {
        pid: load_ledger(Path(path), partner_keys.get(pid), owner=pid, role="partner-ledger")
        for pid, path in sorted(partner_ledgers.items())
    }
    summaries: list[PartnerSummary] = []
    releases: dict[str, list[Recorded[PartnerRelease]]] = {}
    for pid, ledger in partners.items():
        findings += ledger.findings
        releases[pid] = _of(ledger, PartnerRelease)
        summary, partner_findings = check_partner(
            pid,
            ledger.source,
            ledger.input.entries or 0,
            _of(ledger, PartnerRelease | PartnerWithheld),
            tolerance=tolerance,
        )
        summaries.append(summary)
        findings += partner_findings

    reports: list[Recorded[PlatformReport]] = _of(platform, PlatformReport)
    publishes: list[Recorded[PlatformPublish]] = _of(platform, PlatformPublish)
    findings += check_reports(releases, reports)
    findings += check_base_models(releases)
    findings += check_publishes(publishes, reports)
    cards, card_findings, card_inputs = load_cards(list(model_cards), card_verifier)
    findings += card_findings
    more, matched = check_cards(cards, publishes, reports, releases)
    findings += more
    gate: list[Recorded[PlatformEmpiricalAudit]] = _of(platform, PlatformEmpiricalAudit)
    empirical, gate_findings = check_empirical_audits(gate, reports, publishes, tolerance=tolerance)
    findings += gate_findings
    findings += check_card_audits(cards, gate)

    result = AuditResult(
        findings=tuple(withhold_undeclared(f) for f in findings),
        partners=tuple(summaries),
        lineage=tuple(lineage(publishes, reports, matched)),
        inputs=(platform.input, *(p.input for p in partners.values()), *card_inputs),
        tolerance=float(tolerance),
        empirical_audits=tuple(empirical),
    )
    logger.info(
        "audit %s: %d partner ledgers, %d models, %d findings",
        result.verdict,
        len(partners),
        len(publishes),
        len(findings),
    )
    return result


__all__ = ["run_audit"]
