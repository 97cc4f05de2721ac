"""Scoring endpoints: one impression, or a batch.

Bodies are validated straight from bytes by the spec's pydantic models
(``model_validate_json``: no intermediate ``json.loads``), and responses are
written as JSON bytes; that keeps a request at a few tens of microseconds of
Python. Feature values never reach a log line or a metric label.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from server.api.errors import VALUE_ERRORS, rejected_response, validation_response
from server.api.holder import ActiveModel
from server.api.schemas import BatchScoreResponse, ErrorResponse, RequestSchemas, ScoreResponse

log = logging.getLogger("fedctr.serve")
JSON = "application/json"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(status_code=400, detail="invalid Content-Length header")
        if int(declared) > limit:
            raise HTTPException(status_code=413, detail=f"body larger than {limit} bytes")
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _body(schema_name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": ref}}}}


def current_model(request: Request) -> ActiveModel:
    """The served model, read once per request (the hot routes skip FastAPI's dependency
    resolution: it costs more than scoring). 503 until a verified model is loaded."""
    active = request.app.state.holder.current
    if active is None:
        raise HTTPException(
            status_code=503, detail="no verified model is loaded yet; see /v1/ready"
        )
    return active


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("scoring failed on %s: %s", request.url.path, type(exc).__name__)
    return JSONResponse(status_code=500, content={"detail": "internal error while scoring"})


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "request could not be scored"},
    413: {"model": ErrorResponse, "description": "body too large"},
    422: {"model": ErrorResponse, "description": "invalid request: the message names the field"},
    503: {"model": ErrorResponse, "description": "no verified model loaded yet"},
}


def build_score_router(schemas: RequestSchemas, *, max_body_bytes: int) -> APIRouter:
    """Routes bound to one spec's request models."""
    router = APIRouter(tags=["scoring"])
    score_model, batch_model = schemas.score, schemas.batch

    @router.post(
        "/score",
        response_model=ScoreResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_body(score_model.__name__),
        summary="Click probability of one impression",
    )
    async def score(request: Request) -> Response:
        active = current_model(request)
        metrics = request.app.state.metrics
        body = await read_body(request, max_body_bytes)
        try:
            req = score_model.model_validate_json(body)
        except ValidationError as exc:
            return validation_response(exc)
        personalized = req.personalized
        try:
            raw = active.scorer.score_one(req.features, personalized=personalized)
            value, conservative = active.breaker.apply_one(raw, track=personalized)
        except VALUE_ERRORS as exc:
            return rejected_response(request, exc)
        except Exception as exc:
            return _internal_error(request, exc)
        metrics.count_rows(1, personalized=personalized, conservative=conservative)
        metrics.breaker_state(active.breaker.is_open)
        rid = req.request_id
        return Response(
            content=(
                f'{{"score":{value!r},"model_version":"{active.version}",'
                f'"personalized":{"true" if personalized else "false"},'
                f'"conservative":{"true" if conservative else "false"},'
                f'"request_id":{"null" if rid is None else chr(34) + rid + chr(34)}}}'
            ).encode(),
            media_type=JSON,
        )

    @router.post(
        "/score/batch",
        response_model=BatchScoreResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_body(batch_model.__name__),
        summary="Click probabilities of a batch of impressions (one model version)",
    )
    async def score_batch(request: Request) -> Response:
        active = current_model(request)
        metrics = request.app.state.metrics
        body = await read_body(request, max_body_bytes)
        try:
            req = batch_model.model_validate_json(body)
        except ValidationError as exc:
            return validation_response(exc)
        personalized = req.personalized
        rows = req.rows
        try:
            raw = active.scorer.score(rows, personalized=personalized)
            scores, conservative = active.breaker.apply(raw, track=personalized)
        except VALUE_ERRORS as exc:
            return rejected_response(request, exc)
        except Exception as exc:
            return _internal_error(request, exc)
        metrics.count_rows(len(rows), personalized=personalized, conservative=conservative)
        metrics.breaker_state(active.breaker.is_open)
        return Response(
            content=(
                f'{{"scores":[{",".join(map(repr, scores.tolist()))}],'
                f'"model_version":"{active.version}",'
                f'"personalized":{"true" if personalized else "false"},'
                f'"conservative":{"true" if conservative else "false"},"rows":{len(rows)}}}'
            ).encode(),
            media_type=JSON,
        )

    return router


__all__ = ["build_score_router", "read_body"]
