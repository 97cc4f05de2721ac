"""The served model's card: version, hashes, privacy provenance, circuit-breaker state."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.deps import ActiveModelDep
from server.api.schemas import ErrorResponse, ModelInfo

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={503: {"model": ErrorResponse, "description": "no verified model loaded yet"}},
    summary="The model card of the served model, including each partner's privacy statement",
)
async def model_card(active: ActiveModelDep) -> ModelInfo:
    loaded = active.loaded
    return ModelInfo(
        model_version=loaded.version,
        card_sha256=loaded.card_sha256,
        weights_sha256=loaded.weights_sha256,
        inference=active.scorer.inference,
        circuit_breaker=active.breaker_state(),
        card=loaded.card,
    )
