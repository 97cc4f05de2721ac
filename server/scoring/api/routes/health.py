"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fedctr.server.scoring.api.deps import HolderDep
from fedctr.server.scoring.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "no verified model loaded yet"}},
    summary="Readiness: a verified model is loaded and warmed up",
)
async def ready(holder: HolderDep) -> JSONResponse:
    active = holder.current
    if active is None:
        return JSONResponse(status_code=503, content={"ready": False, "model_version": None})
    return JSONResponse(content={"ready": True, "model_version": active.version})
