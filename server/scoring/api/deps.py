"""Request dependencies. All ``async``: a sync dependency would cost a threadpool hop."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from fedctr.server.scoring.api.holder import ActiveModel, ModelHolder
from fedctr.server.scoring.api.metrics import ServiceMetrics


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def get_active_model(request: Request) -> ActiveModel:
    """The model to score with; 503 until one verified model is loaded."""
    active = request.app.state.holder.current
    if active is None:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="no verified model is loaded yet; see /v1/ready",
        )
    return active


ActiveModelDep = Annotated[ActiveModel, Depends(get_active_model)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]

__all__ = [
    "ActiveModelDep",
    "HolderDep",
    "MetricsDep",
    "get_active_model",
    "get_holder",
    "get_metrics",
]
