"""The served model's card: version, hashes, privacy provenance, circuit-breaker state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fedctr.privacy.card import ModelCard
from fedctr.server.scoring.api.deps import ActiveModelDep
from fedctr.server.scoring.api.schemas import ErrorResponse, ModelInfo

router = APIRouter(tags=["model"])
REDACTED = "[redacted]"


def public_card(card: ModelCard) -> dict[str, Any]:
    """The card's JSON without the federation's hashing salt (``card_sha256`` still names
    the signed file): callers need provenance, not the key that places values in buckets."""
    data = card.to_json()
    data["feature_spec"]["spec"]["salt"] = REDACTED
    return data


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={503: {"model": ErrorResponse, "description": "no verified model loaded yet"}},
    summary="The model card of the served model, including each partner's privacy statement",
    description="The verified model card; the feature spec's hashing salt is redacted.",
)
async def model_card(active: ActiveModelDep) -> ModelInfo:
    loaded = active.loaded
    return ModelInfo(
        model_version=loaded.version,
        card_sha256=loaded.card_sha256,
        weights_sha256=loaded.weights_sha256,
        inference=active.scorer.inference,
        circuit_breaker=active.breaker_state(),
        card=public_card(loaded.card),
    )
