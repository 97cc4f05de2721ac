"""Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fedctr.server.scoring.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics: request counts, latency histogram, model version",
)
async def metrics(m: MetricsDep) -> Response:
    return Response(content=m.render(), media_type=m.content_type)
