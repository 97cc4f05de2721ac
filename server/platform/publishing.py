"""Turn a finished run into a signed, published model and a run summary.

The card's privacy section is built only from what partners reported in rounds
that were actually aggregated: a partner that refused, failed or was dropped does
not appear, and each partner's epsilon is the cumulative one it reported last.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.privacy.card import EmpiricalAuditStatement
from fedctr.privacy.signing import canonical_json, load_private_key
from fedctr.privacy.wire import SELECTION_DP_ADAFEST
from fedctr.server.platform.checkpoint import write_json
from fedctr.server.platform.errors import NotEnoughPartnersError, PlatformError
from fedctr.server.platform.faults import FaultPlan, FaultStage
from fedctr.server.platform.ledger import PlatformLedger
from fedctr.server.platform.orchestrator import FederationOutcome
from fedctr.server.platform.rounds import PartnerTrainRecord
from fedctr.server.registry import (
    ModelCardFields,
    PartnerProvenance,
    PublishedModel,
    RegistryError,
    ServingGuard,
    list_versions,
    publish_model,
    verify_card,
    weights_file,
)
from fedctr.server.registry.layout import MODELS_DIR

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class PublishResult:
    published: PublishedModel
    summary_path: Path
    card_fields: ModelCardFields


def partner_provenance(records: list[PartnerTrainRecord]) -> PartnerProvenance:
    """One partner's privacy statement from its accepted replies (last epsilon wins:
    partners report cumulative epsilon). Only contract-declared values."""
    last = records[-1]
    reply = last.reply
    if reply is None:
        raise PlatformError(
            f"partner '{last.partner_id}' trained without differential privacy; fedctr "
            "does not publish models with non-private contributions"
        )
    return PartnerProvenance(
        partner_id=reply.partner_id,
        epsilon=reply.epsilon,
        delta=reply.delta,
        accountant=reply.accountant,
        unit_of_privacy=reply.unit_of_privacy,
        max_rows_per_unit=reply.unit.max_rows,
        bucket_selection="none" if reply.release.selection is None else SELECTION_DP_ADAFEST,
        noise="local" if reply.release.distributed is None else "distributed",
        dp_implementation=reply.dp_implementation,
        rounds_contributed=len(records),
    )


# Without platform evaluation data the breaker has no measured band: serve this declared
# base rate when it trips, and leave the mean-prediction band open.
DEFAULT_BASE_RATE = 0.05


def serving_guard(outcome: FederationOutcome) -> ServingGuard:
    """Base rate and prediction band for the scoring API's circuit breaker.

    From the platform's own evaluation data only (partners send no metrics); without
    it, the declared default base rate and an open band.
    """
    final = outcome.final_metrics
    if final is None:
        return ServingGuard(
            base_rate=DEFAULT_BASE_RATE, mean_prediction_low=0.0, mean_prediction_high=1.0
        )
    base, mean = final.base_rate, final.mean_prediction
    base = min(max(base, 1e-4), 1 - 1e-4)
    width = max(0.5 * mean, 0.05)
    return ServingGuard(
        base_rate=base,
        mean_prediction_low=max(mean - width, 0.0),
        mean_prediction_high=min(mean + width, 1.0),
    )


def _finite(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if isinstance(v, int | float) and math.isfinite(v)}


def build_card_fields(
    outcome: FederationOutcome,
    empirical_audits: tuple[EmpiricalAuditStatement, ...] | None = None,
) -> ModelCardFields:
    """The card's fields: only what ``fedctr.privacy.wire.CARD_FIELDS`` declares.

    ``empirical_audits``: the release gate's passed audits (None: no gate ran).
    """
    contributors = outcome.round_log.contributors()
    if not contributors:
        raise NotEnoughPartnersError(
            f"run {outcome.plan.run_id}: no round was aggregated, nothing to publish"
        )
    partners = tuple(partner_provenance(recs) for _, recs in sorted(contributors.items()))
    final = outcome.final_metrics
    metrics: dict[str, Any] = {}
    if final is not None:
        metrics["platform_holdout"] = _finite(final.as_dict())
    rounds = outcome.round_log.rounds
    training = {
        "strategy": outcome.plan.strategy.name,
        "min_partners": outcome.plan.strategy.min_partners,
        "rounds_planned": outcome.plan.rounds,
        "secure_aggregation": (
            {"protocol": "none"}
            if outcome.plan.secure_aggregation is None
            else {"protocol": "secagg+", **outcome.plan.secure_aggregation.to_dict()}
        ),
        "rounds_aggregated": sum(1 for r in rounds.values() if r.aggregated),
        "failures": [
            {"round": r.round, "node_id": f.node_id, "kind": f.kind}
            for r in rounds.values()
            for f in r.failures
        ],
    }
    return ModelCardFields(
        run_id=outcome.plan.run_id,
        rounds=training["rounds_aggregated"],
        partners=partners,
        empirical_audits=empirical_audits,
        metrics=metrics,
        training=training,
        serving=serving_guard(outcome),
    )


@dataclass(frozen=True)
class PublishTarget:
    """Where a run's model goes: the registry, the platform's signing key, its ledger."""

    registry: Path
    signing_key: Path
    ledger: Path


def find_published(
    registry: Path, *, run_id: str, weights_sha256: str, public_key: Ed25519PublicKey
) -> PublishedModel | None:
    """The registry version of ``run_id`` with these weights, if one was signed already.

    Only versions whose card verifies with the platform's key count."""
    if not (registry / MODELS_DIR).is_dir():
        return None
    for version in list_versions(registry):
        path = registry / MODELS_DIR / version
        try:
            card = verify_card(path, public_key)
        except RegistryError:
            continue
        if card["run_id"] == run_id and card["weights"]["sha256"] == weights_sha256:
            return PublishedModel(
                version=version,
                path=path,
                weights_sha256=weights_sha256,
                card_sha256=hashlib.sha256(canonical_json(card)).hexdigest(),
            )
    return None


def publish_outcome(
    outcome: FederationOutcome,
    target: PublishTarget,
    *,
    empirical_audits: tuple[EmpiricalAuditStatement, ...] | None = None,
    faults: FaultPlan | None = None,
) -> PublishResult:
    """Sign and publish the final global model; write ``summary.json`` next to the run.

    Idempotent across a crash: a version of this run with these weights already in the
    registry (signed, then the platform stopped before ledgering it) is recorded, not
    published a second time; the ledger keeps one publish entry per version.

    ``empirical_audits``: what the release gate found (it refuses to publish a failed
    audit; a statement that did not pass is refused here too).
    """
    failed = [a for a in empirical_audits or () if not a.passed]
    if failed:
        raise PlatformError(
            f"run {outcome.plan.run_id}: an empirical audit refuted a claimed epsilon "
            f"(partners {[list(a.partners) for a in failed]}); the model is not published"
        )
    fields = build_card_fields(outcome, empirical_audits)
    signing_key = load_private_key(target.signing_key)
    published = find_published(
        target.registry,
        run_id=outcome.plan.run_id,
        weights_sha256=hashlib.sha256(weights_file(outcome.model)).hexdigest(),
        public_key=signing_key.public_key(),
    )
    if published is not None:
        logger.info(
            "run %s: %s was signed into the registry before the platform stopped; "
            "recording it instead of publishing again",
            outcome.plan.run_id,
            published.version,
        )
    else:
        published = publish_model(
            registry_dir=target.registry,
            model=outcome.model,
            spec=outcome.plan.spec,
            card=fields,
            signing_key=signing_key,
        )
    faults = faults or FaultPlan()
    faults.hit(FaultStage.DURING_PUBLISH, outcome.plan.rounds)
    PlatformLedger(target.ledger, signing_key).record_publish(
        run_id=outcome.plan.run_id,
        published=published,
        rounds=fields.rounds,
        partners=tuple(p.partner_id for p in fields.partners),
    )
    logger.info(
        "published %s (weights sha256 %s)", published.version, published.weights_sha256[:16]
    )
    summary = {
        "run_id": outcome.plan.run_id,
        "model_version": published.version,
        "model_path": str(published.path),
        "weights_sha256": published.weights_sha256,
        "card_sha256": published.card_sha256,
        "registry": str(target.registry),
        "seconds": round(outcome.seconds, 2),
        "rounds": [outcome.round_log.rounds[r].to_json() for r in sorted(outcome.round_log.rounds)],
    }
    path = outcome.plan.work_dir / SUMMARY_FILE
    write_json(path, summary)
    return PublishResult(published, path, fields)


__all__ = [
    "SUMMARY_FILE",
    "PublishResult",
    "PublishTarget",
    "build_card_fields",
    "find_published",
    "publish_outcome",
]
