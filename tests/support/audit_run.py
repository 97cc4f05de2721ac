"""A small, consistent, signed federation record on disk, for tests and as a wiring example.

It does what the partner nodes and the platform do, in the order they do it, with
the real training-time accountant (Opacus, via :class:`PartnerAccountant`) and real
Ed25519 keys, but without training: per round each partner appends its release,
the platform verifies the partner's entry and appends its report; at the end the
platform publishes one model (registry layout and card signature as in
``fedctr.server.registry``, the card built by :class:`fedctr.privacy.card.ModelCard`) and
records it. Nothing checks budgets here, so a test can build an overspending
partner; ``epsilon_scale`` < 1 builds an under-reporting one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedctr.privacy.accounting import PartnerAccountant
from fedctr.privacy.audit.one_run import epsilon_lower_bound
from fedctr.privacy.budget import AccountantKind, DPSGDRound, PrivacyBudget
from fedctr.privacy.card import (
    CARD_FILE,
    SIGNATURE_FILE,
    WEIGHTS_FILE,
    EmpiricalAuditStatement,
    ModelCard,
    PartnerProvenance,
    ServingGuard,
)
from fedctr.privacy.ledger import (
    PLATFORM_OWNER,
    Entry,
    Ledger,
    PartnerRelease,
    PlatformEmpiricalAudit,
    PlatformPublish,
    PlatformReport,
    ledger_file,
    public_key_file,
    verify_entry,
)
from fedctr.privacy.ledger.bodies import ScoreHistogram
from fedctr.privacy.signing import (
    canonical_json,
    generate_signing_key,
    key_id,
    save_public_key,
    sign,
)


@dataclass(frozen=True, kw_only=True)
class SyntheticPartner:
    """One partner's fixed DP-SGD setting for every round."""

    partner_id: str
    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    budget: PrivacyBudget
    accountant: AccountantKind = "rdp"
    max_grad_norm: float = 1.0
    epsilon_scale: float = 1.0


@dataclass(frozen=True, kw_only=True)
class SyntheticGate:
    """One release-gate audit of the configuration the first of ``partners`` declared.

    No training: canary scores are drawn, N(``signal``, 1) for included canaries and
    N(0, 1) for excluded ones, and bounded by the real one-run procedure
    (:func:`epsilon_lower_bound`, default guess grid). ``signal`` 0 is a correct DP-SGD
    (nothing to see), a large one a broken one. ``stated_bound`` and ``claim_scale``
    build a platform that writes a flattering bound or an inflated claim.
    """

    partners: tuple[str, ...]
    signal: float = 0.0
    canaries: int = 1000
    confidence: float = 0.95
    seed: int = 0
    stated_bound: float | None = None
    claim_scale: float = 1.0


def _histogram(scores: np.ndarray, included: np.ndarray, bins: int = 20) -> ScoreHistogram:
    edges = np.linspace(scores.min(), scores.max(), bins + 1)
    return ScoreHistogram(
        edges=tuple(float(e) for e in edges),
        included=tuple(int(c) for c in np.histogram(scores[included], edges)[0]),
        excluded=tuple(int(c) for c in np.histogram(scores[~included], edges)[0]),
    )


def _gate_entry(
    gate: SyntheticGate, run_id: str, partner: SyntheticPartner, rounds: int
) -> PlatformEmpiricalAudit:
    """What the release gate signs for ``gate``, as ``federation.release_gate`` does."""
    rng = np.random.default_rng(gate.seed)
    included = rng.random(gate.canaries) < 0.5
    scores = rng.normal(size=gate.canaries) + gate.signal * included
    delta = partner.budget.delta
    bound = epsilon_lower_bound(scores, included, confidence=gate.confidence, delta=delta)
    history = [(partner.noise_multiplier, partner.sample_rate, partner.steps_per_round)] * rounds
    claimed = PartnerAccountant(kind=partner.accountant, history=history).epsilon(delta)
    mechanism = DPSGDRound(
        noise_multiplier=partner.noise_multiplier,
        sample_rate=partner.sample_rate,
        steps=partner.steps_per_round,
        max_grad_norm=partner.max_grad_norm,
    )
    return PlatformEmpiricalAudit(
        run_id=run_id,
        partners=gate.partners,
        model="lr",
        dp_implementation="opacus-ghost",
        accountant=partner.accountant,
        unit_of_privacy="example",
        mechanisms=(mechanism,) * rounds,
        delta=delta,
        claimed_epsilon=claimed * gate.claim_scale,
        lower_bound=bound.epsilon if gate.stated_bound is None else gate.stated_bound,
        confidence=bound.confidence,
        canaries=gate.canaries,
        guesses=bound.guesses,
        correct=bound.correct,
        data_sha256=_sha(f"{run_id}/platform-data"),
        histogram=_histogram(scores, included),
    )


@dataclass(frozen=True, kw_only=True)
class SyntheticRun:
    """Where the synthetic run was written, and the private keys (for tamper tests)."""

    root: Path
    ledgers_dir: Path
    keys_dir: Path
    registry_dir: Path
    card_dir: Path
    run_id: str
    partner_keys: dict[str, Ed25519PrivateKey] = field(repr=False)
    platform_key: Ed25519PrivateKey = field(repr=False)

    def ledger(self, owner: str) -> Path:
        return ledger_file(self.ledgers_dir, owner)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_synthetic_run(
    root: str | Path,
    *,
    partners: Sequence[SyntheticPartner],
    rounds: int,
    run_id: str = "run-0001",
    model_version: str = "v0001",
    edit_card: Callable[[dict[str, Any]], None] | None = None,
    gates: Sequence[SyntheticGate] | None = None,
) -> SyntheticRun:
    """Write ``ledgers/``, ``keys/`` and ``registry/`` under ``root`` for one run.

    ``edit_card`` changes the card before the platform signs, publishes and records it
    (e.g. a platform that publishes a value the wire contract does not declare).
    ``gates``: release-gate audits the platform signs before publishing (None: no gate
    ran); the card states the passed ones. A refuted one is still followed by the
    publish, as a platform that ignores its gate would do.
    """
    root = Path(root)
    ledgers_dir, keys_dir, registry_dir = root / "ledgers", root / "keys", root / "registry"
    keys_dir.mkdir(parents=True, exist_ok=True)
    platform_key = generate_signing_key()
    save_public_key(platform_key, public_key_file(keys_dir, PLATFORM_OWNER))
    partner_keys = {p.partner_id: generate_signing_key() for p in partners}
    for pid, key in partner_keys.items():
        save_public_key(key, public_key_file(keys_dir, pid))

    last: dict[str, PartnerRelease] = {}
    histories: dict[str, list[tuple[float, float, int]]] = {p.partner_id: [] for p in partners}
    with Ledger.open(
        ledger_file(ledgers_dir, PLATFORM_OWNER), signing_key=platform_key, owner=PLATFORM_OWNER
    ) as platform:
        for round_ in range(1, rounds + 1):
            base = _sha(f"{run_id}/global/{round_ - 1}")
            for p in partners:
                mechanism = DPSGDRound(
                    noise_multiplier=p.noise_multiplier,
                    sample_rate=p.sample_rate,
                    steps=p.steps_per_round,
                    max_grad_norm=p.max_grad_norm,
                )
                histories[p.partner_id].append(
                    (p.noise_multiplier, p.sample_rate, p.steps_per_round)
                )
                accountant = PartnerAccountant(kind=p.accountant, history=histories[p.partner_id])
                release = PartnerRelease(
                    run_id=run_id,
                    round=round_,
                    partner_id=p.partner_id,
                    base_model_hash=base,
                    update_hash=_sha(f"{run_id}/{p.partner_id}/update/{round_}"),
                    mechanism=mechanism,
                    accountant=p.accountant,
                    dp_implementation="opacus-ghost",
                    unit_of_privacy="example",
                    epsilon_after=accountant.epsilon(p.budget.delta) * p.epsilon_scale,
                    delta=p.budget.delta,
                    budget=p.budget,
                )
                # Partner node: record the release before the update leaves.
                with Ledger.open(
                    ledger_file(ledgers_dir, p.partner_id),
                    signing_key=partner_keys[p.partner_id],
                    owner=p.partner_id,
                ) as ledger:
                    sent = ledger.append(release).to_json()
                # Platform: verify the entry that came with the update, then record it.
                received = Entry.from_json(sent)
                verify_entry(received, partner_keys[p.partner_id].public_key())
                platform.append(
                    PlatformReport.from_release(
                        received.parsed_body(),  # type: ignore[arg-type]
                        partner_entry_hash=received.hash,
                        accepted=True,
                    )
                )
                last[p.partner_id] = release

        statements: list[EmpiricalAuditStatement] | None = None if gates is None else []
        by_id = {p.partner_id: p for p in partners}
        for gate in gates or ():
            body = _gate_entry(gate, run_id, by_id[gate.partners[0]], rounds)
            entry = platform.append(body)
            if body.passed and statements is not None:
                statements.append(
                    EmpiricalAuditStatement(
                        partners=body.partners,
                        model=body.model,
                        dp_implementation=body.dp_implementation,
                        claimed_epsilon=body.claimed_epsilon,
                        lower_bound=body.lower_bound,
                        confidence=body.confidence,
                        canaries=body.canaries,
                        ledger_entry=entry.hash,
                    )
                )

        weights = hashlib.sha256(f"{run_id}/weights".encode()).digest() * 64
        weights_sha = hashlib.sha256(weights).hexdigest()
        card_dir = registry_dir / "models" / f"{model_version}-{weights_sha[:12]}"
        card = _card(
            run_id=run_id,
            rounds=rounds,
            model_version=card_dir.name,
            weights_sha256=weights_sha,
            releases=[last[p.partner_id] for p in partners],
            platform_key=platform_key,
            empirical_audits=None if statements is None else tuple(statements),
        )
        if edit_card is not None:
            edit_card(card)
        card_dir.mkdir(parents=True)
        (card_dir / WEIGHTS_FILE).write_bytes(weights)
        (card_dir / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True))
        (card_dir / SIGNATURE_FILE).write_text(
            json.dumps(
                {
                    "algorithm": "ed25519",
                    "key_id": key_id(platform_key),
                    "signed": "canonical_json(card.json)",
                    "signature": sign(platform_key, canonical_json(card)),
                }
            )
        )
        (registry_dir / "LATEST").write_text(f"{card_dir.name}\n")
        platform.append(
            PlatformPublish(
                run_id=run_id,
                model_version=card_dir.name,
                weights_sha256=weights_sha,
                card_sha256=hashlib.sha256(canonical_json(card)).hexdigest(),
                rounds=rounds,
                partners=tuple(p.partner_id for p in partners),
            )
        )
    return SyntheticRun(
        root=root,
        ledgers_dir=ledgers_dir,
        keys_dir=keys_dir,
        registry_dir=registry_dir,
        card_dir=card_dir,
        run_id=run_id,
        partner_keys=partner_keys,
        platform_key=platform_key,
    )


def _card(
    *,
    run_id: str,
    rounds: int,
    model_version: str,
    weights_sha256: str,
    releases: Sequence[PartnerRelease],
    platform_key: Ed25519PrivateKey,
    empirical_audits: tuple[EmpiricalAuditStatement, ...] | None,
) -> dict[str, Any]:
    """The card JSON the platform publishes for these releases (no feature spec: the
    audit does not read it)."""
    return ModelCard(
        model_version=model_version,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        run_id=run_id,
        rounds=rounds,
        weights_sha256=weights_sha256,
        spec_hash="0" * 64,
        feature_spec={},
        model_config={"name": "lr"},
        partners=tuple(
            PartnerProvenance(
                partner_id=r.partner_id,
                epsilon=r.epsilon_after,
                delta=r.delta,
                accountant=r.accountant,
                unit_of_privacy=r.unit_of_privacy,
                dp_implementation=r.dp_implementation,
                rounds_contributed=rounds,
            )
            for r in releases
        ),
        empirical_audits=empirical_audits,
        metrics={"platform_holdout": {"auc": 0.7, "logloss": 0.45}},
        training={
            "strategy": "fedavg",
            "min_partners": len(releases),
            "rounds_planned": rounds,
            "rounds_aggregated": rounds,
        },
        serving=ServingGuard(base_rate=0.1, mean_prediction_low=0.0, mean_prediction_high=1.0),
        user_columns=(),
        signing_key_id=key_id(platform_key),
    ).to_json()


__all__ = ["SyntheticGate", "SyntheticPartner", "SyntheticRun", "write_synthetic_run"]
