"""Scoring endpoints: one impression, or a batch.

The work is in :mod:`fedctr.server.scoring.api.handlers`.

Bodies are validated straight from bytes by the spec's pydantic models
(``model_validate_json``: no intermediate ``json.loads``); the route bodies are
documented in OpenAPI through ``openapi_extra`` references to those models.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from fedctr.server.scoring.api.handlers import ScoreHandlers
from fedctr.server.scoring.api.schemas import (
    BatchScoreResponse,
    ErrorResponse,
    RequestSchemas,
    ScoreResponse,
)
from fedctr.server.scoring.columnar import ARROW_STREAM

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


def _body(schema_name: str, *, arrow: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    content: dict[str, Any] = {JSON: {"schema": ref}}
    extra: dict[str, Any] = {}
    if arrow:
        content[ARROW_STREAM] = {
            "schema": {"type": "string", "format": "binary"},
            "description": (
                "Arrow IPC stream, one column per spec feature (same names, rules and null "
                "semantics as the JSON rows); personalized goes in the query string"
            ),
        }
        extra["parameters"] = [
            {
                "name": "personalized",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": True},
                "description": "Arrow bodies only (a JSON body carries personalized itself)",
            }
        ]
    return {"requestBody": {"required": True, "content": content}, **extra}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "request could not be scored"},
    413: {"model": ErrorResponse, "description": "body too large"},
    422: {"model": ErrorResponse, "description": "invalid request: the message names the field"},
    503: {"model": ErrorResponse, "description": "no verified model loaded yet"},
}


def build_score_router(
    handlers: ScoreHandlers, schemas: RequestSchemas, *, max_body_bytes: int
) -> APIRouter:
    """Routes bound to one spec's request models (documented in OpenAPI)."""
    router = APIRouter(tags=["scoring"])

    @router.post(
        "/score",
        response_model=ScoreResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_body(schemas.score.__name__),
        summary="Click probability of one impression",
    )
    async def score(request: Request) -> Response:
        body = await read_body(request, max_body_bytes)
        status, payload = handlers.single(body, request.url.path)
        return Response(content=payload, status_code=status, media_type=JSON)

    @router.post(
        "/score/batch",
        response_model=BatchScoreResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=_body(schemas.batch.__name__, arrow=True),
        summary="Click probabilities of a batch of impressions (one model version)",
    )
    async def score_batch(request: Request) -> Response:
        body = await read_body(request, max_body_bytes)
        status, payload = handlers.batch(
            body,
            request.url.path,
            content_type=request.headers.get("content-type", JSON),
            query=request.url.query,
        )
        return Response(content=payload, status_code=status, media_type=JSON)

    return router


__all__ = ["ERROR_RESPONSES", "build_score_router", "read_body"]
