"""Scoring request handling: body bytes in, ``(status, JSON bytes)`` out.

Shared by the FastAPI routes (documented, validated the FastAPI way around the
body) and the ASGI fast path (:mod:`server.api.fastpath`), so both answer
byte-for-byte alike. Bodies are validated straight from bytes by the spec's
pydantic models; feature values never reach a log line or a metric label.
"""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError

from server.api.errors import VALUE_ERRORS, error_items
from server.api.holder import ModelHolder
from server.api.metrics import ServiceMetrics
from server.api.schemas import RequestSchemas

log = logging.getLogger("fedctr.serve")
Reply = tuple[int, bytes]

NOT_READY: Reply = (503, b'{"detail":"no verified model is loaded yet; see /v1/ready"}')
TOO_LARGE = b'{"detail":"request body too large"}'


def _json(status: int, content: object) -> Reply:
    return status, json.dumps(content, separators=(",", ":")).encode()


def _invalid(exc: ValidationError) -> Reply:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return _json(422, {"detail": error_items(errors, ("body",))})


def _failed(path: str, exc: Exception) -> Reply:
    if isinstance(exc, VALUE_ERRORS):
        log.warning("rejected request to %s: %s", path, type(exc).__name__)
        return _json(400, {"detail": f"request could not be scored ({type(exc).__name__})"})
    log.error("scoring failed on %s: %s", path, type(exc).__name__)
    return _json(500, {"detail": "internal error while scoring"})


def _flag(value: bool) -> str:
    return "true" if value else "false"


class ScoreHandlers:
    """The two scoring operations of one app (its holder, metrics and request models)."""

    def __init__(
        self, *, holder: ModelHolder, metrics: ServiceMetrics, schemas: RequestSchemas
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.score_model = schemas.score
        self.batch_model = schemas.batch

    def single(self, body: bytes, path: str = "/v1/score") -> Reply:
        active = self.holder.current  # read once: a concurrent swap cannot mix versions
        if active is None:
            return NOT_READY
        try:
            req = self.score_model.model_validate_json(body)
        except ValidationError as exc:
            return _invalid(exc)
        personalized = req.personalized
        try:
            raw = active.scorer.score_one(req.features, personalized=personalized)
            value, conservative = active.breaker.apply_one(raw, track=personalized)
        except Exception as exc:
            return _failed(path, exc)
        self.metrics.count_rows(1, personalized=personalized, conservative=conservative)
        self.metrics.breaker_state(active.breaker.is_open)
        rid = req.request_id  # matches ^[A-Za-z0-9._:-]+$: safe inside a JSON string
        return 200, (
            f'{{"score":{value!r},"model_version":"{active.version}",'
            f'"personalized":{_flag(personalized)},"conservative":{_flag(conservative)},'
            f'"request_id":{"null" if rid is None else chr(34) + rid + chr(34)}}}'
        ).encode()

    def batch(self, body: bytes, path: str = "/v1/score/batch") -> Reply:
        active = self.holder.current
        if active is None:
            return NOT_READY
        try:
            req = self.batch_model.model_validate_json(body)
        except ValidationError as exc:
            return _invalid(exc)
        personalized, rows = req.personalized, req.rows
        try:
            raw = active.scorer.score(rows, personalized=personalized)
            scores, conservative = active.breaker.apply(raw, track=personalized)
        except Exception as exc:
            return _failed(path, exc)
        self.metrics.count_rows(len(rows), personalized=personalized, conservative=conservative)
        self.metrics.breaker_state(active.breaker.is_open)
        return 200, (
            f'{{"scores":[{",".join(map(repr, scores.tolist()))}],'
            f'"model_version":"{active.version}","personalized":{_flag(personalized)},'
            f'"conservative":{_flag(conservative)},"rows":{len(rows)}}}'
        ).encode()


__all__ = ["NOT_READY", "TOO_LARGE", "Reply", "ScoreHandlers"]
