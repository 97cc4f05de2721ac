"""Checks across parties: partner ledgers vs the platform ledger vs the model cards.

Each side can rewrite its own ledger with its own key; it cannot rewrite the other's.
So a partner that drops or edits a release disagrees with the platform's report of
it (which carries the hash of the partner's signed entry), and a card that claims a
model, a partner set or an epsilon the ledgers do not back disagrees with both.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from fedctr.privacy.audit.cards import CardClaims
from fedctr.privacy.audit.loading import Recorded
from fedctr.privacy.audit.partner_checks import same
from fedctr.privacy.audit.result import LineageRow
from fedctr.privacy.ledger import (
    PLATFORM_OWNER,
    Finding,
    FindingCode,
    PartnerRelease,
    PlatformPublish,
    PlatformReport,
)
from fedctr.privacy.ledger.bodies import mechanism_dict
from fedctr.privacy.wire import NEIGHBOUR_RELATION, SELECTION_DP_ADAFEST

Releases = Mapping[str, Sequence[Recorded[PartnerRelease]]]


def _release_index(releases: Releases) -> dict[tuple[str, str, int], Recorded[PartnerRelease]]:
    index: dict[tuple[str, str, int], Recorded[PartnerRelease]] = {}
    for partner_id, recs in releases.items():
        for rec in recs:
            index.setdefault((partner_id, rec.body.run_id, rec.body.round), rec)
    return index


def _differences(report: Recorded[PlatformReport], release: Recorded[PartnerRelease]) -> list[str]:
    r, p = report.body, release.body
    diffs: list[str] = []
    if r.partner_entry_hash != release.entry.hash:
        diffs.append("partner entry hash")
    if not same(r.epsilon_after, p.epsilon_after):
        diffs.append(f"epsilon {r.epsilon_after:.6g} vs {p.epsilon_after:.6g}")
    if not same(r.delta, p.delta):
        diffs.append(f"delta {r.delta:g} vs {p.delta:g}")
    if r.update_hash != p.update_hash:
        diffs.append("update hash")
    if r.accountant != p.accountant:
        diffs.append(f"accountant {r.accountant} vs {p.accountant}")
    if mechanism_dict(r.mechanism) != mechanism_dict(p.mechanism):
        diffs.append("mechanism")
    if (r.unit_of_privacy, r.max_rows_per_unit) != (p.unit_of_privacy, p.max_rows_per_unit):
        diffs.append(
            f"unit of privacy {r.unit_of_privacy}/{r.max_rows_per_unit} vs "
            f"{p.unit_of_privacy}/{p.max_rows_per_unit}"
        )
    return diffs


def check_reports(
    releases: Releases,
    reports: Sequence[Recorded[PlatformReport]],
) -> list[Finding]:
    """Every platform report backed by the partner's release, and every release reported."""
    findings: list[Finding] = []
    index = _release_index(releases)
    reported: set[tuple[str, str, int]] = set()
    missing_ledger: set[str] = set()
    for rep in reports:
        body = rep.body
        key = (body.partner_id, body.run_id, body.round)
        if key in reported:
            findings.append(
                rep.finding(
                    FindingCode.DUPLICATE_ROUND,
                    f"a second report of partner {body.partner_id} for run {body.run_id} "
                    f"round {body.round}",
                )
            )
            continue
        reported.add(key)
        if body.partner_id not in releases:
            if body.partner_id not in missing_ledger:
                missing_ledger.add(body.partner_id)
                findings.append(
                    rep.finding(
                        FindingCode.LEDGER_MISSING,
                        f"the platform received updates from partner {body.partner_id!r}, "
                        "but no ledger of that partner was given to the audit",
                    )
                )
            continue
        release = index.get(key)
        if release is None:
            findings.append(
                rep.finding(
                    FindingCode.REPORT_WITHOUT_RELEASE,
                    f"the platform recorded an update from {body.partner_id} in run "
                    f"{body.run_id} round {body.round}, but the partner's ledger has no such "
                    "release: it was dropped from the partner ledger or never made",
                )
            )
            continue
        diffs = _differences(rep, release)
        if diffs:
            findings.append(
                release.finding(
                    FindingCode.REPORT_MISMATCH,
                    f"differs from what the platform recorded ({rep.source} seq "
                    f"{rep.entry.seq}): {', '.join(diffs)}",
                )
            )
    for key, rec in sorted(index.items()):
        if key not in reported:
            findings.append(
                rec.finding(
                    FindingCode.RELEASE_UNREPORTED,
                    f"the platform ledger has no report of this release (run {key[1]} "
                    f"round {key[2]}): it was dropped from the platform ledger or never arrived",
                )
            )
    return findings


def check_base_models(releases: Releases) -> list[Finding]:
    """All partners of one round started from the same global model."""
    by_round: dict[tuple[str, int], list[Recorded[PartnerRelease]]] = defaultdict(list)
    for recs in releases.values():
        for rec in recs:
            by_round[(rec.body.run_id, rec.body.round)].append(rec)
    findings: list[Finding] = []
    for (run_id, round_), recs in sorted(by_round.items()):
        counts = Counter(r.body.base_model_hash for r in recs)
        if len(counts) < 2:
            continue
        common = counts.most_common(1)[0][0]
        for rec in recs:
            if rec.body.base_model_hash != common:
                findings.append(
                    rec.finding(
                        FindingCode.BASE_MODEL_DIVERGENCE,
                        f"started run {run_id} round {round_} from model "
                        f"{rec.body.base_model_hash[:12]}, while the other partners started "
                        f"from {common[:12]}",
                    )
                )
    return findings


def _accepted(
    reports: Sequence[Recorded[PlatformReport]], run_id: str, rounds: int
) -> dict[str, list[Recorded[PlatformReport]]]:
    """Accepted reports of ``run_id``'s first ``rounds`` aggregated rounds, per partner, in
    ledger order. ``rounds`` counts aggregated rounds (what a card and a publish entry
    state), not round numbers: a round in between may have aggregated nothing."""
    ours = [r for r in reports if r.body.accepted and r.body.run_id == run_id]
    kept = set(sorted({r.body.round for r in ours})[:rounds])
    accepted: dict[str, list[Recorded[PlatformReport]]] = defaultdict(list)
    for rep in ours:
        if rep.body.round in kept:
            accepted[rep.body.partner_id].append(rep)
    return accepted


def check_publishes(
    publishes: Sequence[Recorded[PlatformPublish]], reports: Sequence[Recorded[PlatformReport]]
) -> list[Finding]:
    """A published model credits exactly the partners whose accepted updates it contains."""
    findings: list[Finding] = []
    for pub in publishes:
        b = pub.body
        expected = set(_accepted(reports, b.run_id, b.rounds))
        if set(b.partners) != expected:
            findings.append(
                pub.finding(
                    FindingCode.PUBLISH_MISMATCH,
                    f"model {b.model_version} lists partners {sorted(b.partners)}, but the "
                    f"platform accepted updates in its {b.rounds} aggregated round(s) from "
                    f"{sorted(expected)}",
                )
            )
    return findings


def check_cards(
    cards: Sequence[CardClaims],
    publishes: Sequence[Recorded[PlatformPublish]],
    reports: Sequence[Recorded[PlatformReport]],
    releases: Releases,
) -> tuple[list[Finding], dict[str, CardClaims]]:
    """Each card matches a publish entry and each partner statement matches the ledgers.

    Returns the findings and the cards matched, by model version.
    """
    findings: list[Finding] = []
    matched: dict[str, CardClaims] = {}
    index = _release_index(releases)
    by_weights = {p.body.weights_sha256: p for p in publishes}

    def found(claims: CardClaims, code: FindingCode, message: str) -> None:
        findings.append(Finding(code=code, source=claims.source, message=message))

    for claims in cards:
        card = claims.card
        beside = claims.weights_file_sha256
        if beside is not None and beside != card.weights_sha256:
            found(
                claims,
                FindingCode.CARD_HASH_MISMATCH,
                f"the weights file beside the card hashes to {beside[:12]}, "
                f"the card says {card.weights_sha256[:12]}",
            )
        pub = by_weights.get(card.weights_sha256)
        if pub is None:
            found(
                claims,
                FindingCode.CARD_UNKNOWN_MODEL,
                f"model {card.model_version} (weights {card.weights_sha256[:12]}) was never "
                f"published according to the {PLATFORM_OWNER} ledger",
            )
            continue
        matched[pub.body.model_version] = claims
        b = pub.body
        where = f"{pub.source} seq {pub.entry.seq}"
        if claims.card_sha256 != b.card_sha256:
            found(
                claims,
                FindingCode.CARD_HASH_MISMATCH,
                f"card hashes to {claims.card_sha256[:12]} but {where} published "
                f"{b.card_sha256[:12]}: the card was changed after publishing",
            )
        for name, mine, theirs in (
            ("model_version", card.model_version, b.model_version),
            ("run_id", card.run_id, b.run_id),
            ("rounds", card.rounds, b.rounds),
            ("partners", sorted(p.partner_id for p in card.partners), sorted(b.partners)),
        ):
            if mine != theirs:
                found(claims, FindingCode.CARD_MISMATCH, f"{name} {mine} but {where} says {theirs}")
        if card.neighbour_relation != NEIGHBOUR_RELATION:
            found(
                claims,
                FindingCode.CARD_MISMATCH,
                f"states the neighbour relation {card.neighbour_relation!r}; the ledgers' "
                f"releases are accounted under {NEIGHBOUR_RELATION!r}",
            )
        accepted = _accepted(reports, card.run_id, card.rounds)
        for partner in card.partners:
            reps = accepted.get(partner.partner_id)
            if not reps:
                found(
                    claims,
                    FindingCode.CARD_MISMATCH,
                    f"credits partner {partner.partner_id}, but the platform accepted no "
                    f"update from it in the {card.rounds} aggregated round(s) of run {card.run_id}",
                )
                continue
            last = reps[-1].body
            release = index.get((partner.partner_id, last.run_id, last.round))
            epsilon = last.epsilon_after if release is None else release.body.epsilon_after
            source = (
                f"{reps[-1].source} seq {reps[-1].entry.seq}"
                if release is None
                else f"{release.source} seq {release.entry.seq}"
            )
            if not same(partner.epsilon, epsilon) or not same(partner.delta, last.delta):
                found(
                    claims,
                    FindingCode.CARD_EPSILON_MISMATCH,
                    f"states epsilon {partner.epsilon:.6g} (delta {partner.delta:g}) for "
                    f"{partner.partner_id}; its last accepted release, {source} (round "
                    f"{last.round}), says epsilon {epsilon:.6g} (delta {last.delta:g})",
                )
            # the partner's own signed release where there is one, else the platform's copy
            signed = last if release is None else release.body
            checks: list[tuple[str, object, object]] = [
                ("accountant", partner.accountant, last.accountant),
                ("unit_of_privacy", partner.unit_of_privacy, signed.unit_of_privacy),
                ("max_rows_per_unit", partner.max_rows_per_unit, signed.max_rows_per_unit),
                (
                    "bucket_selection",
                    partner.bucket_selection,
                    "none" if signed.mechanism.selection is None else SELECTION_DP_ADAFEST,
                ),
                (
                    "noise",
                    partner.noise,
                    "local" if signed.mechanism.distributed is None else "distributed",
                ),
                ("rounds_contributed", partner.rounds_contributed, len(reps)),
            ]
            if release is not None:
                checks.append(
                    (
                        "dp_implementation",
                        partner.dp_implementation,
                        release.body.dp_implementation,
                    )
                )
            for name, mine, theirs in checks:
                if mine != theirs:
                    found(
                        claims,
                        FindingCode.CARD_MISMATCH,
                        f"{partner.partner_id}'s {name} is {mine} on the card, {theirs} in "
                        "the ledgers",
                    )
    return findings, matched


def lineage(
    publishes: Sequence[Recorded[PlatformPublish]],
    reports: Sequence[Recorded[PlatformReport]],
    cards: Mapping[str, CardClaims],
) -> list[LineageRow]:
    """Every published model with its hashes, rounds, partners and their epsilons."""
    rows = []
    for pub in publishes:
        b = pub.body
        claims = cards.get(b.model_version)
        if claims is not None:
            epsilons = tuple((p.partner_id, p.epsilon) for p in claims.card.partners)
        else:
            accepted = _accepted(reports, b.run_id, b.rounds)
            epsilons = tuple((pid, reps[-1].body.epsilon_after) for pid, reps in accepted.items())
        rows.append(
            LineageRow(
                model_version=b.model_version,
                run_id=b.run_id,
                rounds=b.rounds,
                partners=b.partners,
                weights_sha256=b.weights_sha256,
                card_sha256=b.card_sha256,
                publish_seq=pub.entry.seq,
                card_source=None if claims is None else claims.source,
                partner_epsilons=tuple(sorted(epsilons)),
            )
        )
    return rows


__all__ = ["check_base_models", "check_cards", "check_publishes", "check_reports", "lineage"]
