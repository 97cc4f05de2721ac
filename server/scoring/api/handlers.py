"""Scoring request handling: body bytes in, ``(status, JSON bytes)`` out.

Shared by the FastAPI routes (documented, validated the FastAPI way around the
body) and the ASGI fast path (:mod:`fedctr.server.scoring.api.fastpath`), so both answer
byte-for-byte alike. Bodies are validated straight from bytes by the spec's
pydantic models; feature values never reach a log line or a metric label.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from pydantic import ValidationError

from fedctr.server.scoring.api.errors import VALUE_ERRORS, error_items
from fedctr.server.scoring.api.holder import ModelHolder
from fedctr.server.scoring.api.metrics import ServiceMetrics
from fedctr.server.scoring.api.schemas import RequestSchemas
from fedctr.server.scoring.columnar import ARROW_STREAM, ColumnarBodyError
from fedctr.server.scoring.rollout import Arm, Rollout, Routed

log = logging.getLogger("fedctr.serve")
Reply = tuple[int, bytes]

NOT_READY: Reply = (503, b'{"detail":"no verified model is loaded yet; see /v1/ready"}')
TOO_LARGE = b'{"detail":"request body too large"}'


def _json(status: int, content: object) -> Reply:
    return status, json.dumps(content, separators=(",", ":")).encode()


def _invalid(exc: ValidationError) -> Reply:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return _json(422, {"detail": error_items(errors, ("body",))})


def _columnar_invalid(exc: ColumnarBodyError, where: str = "body") -> Reply:
    loc = [where] if exc.column is None else [where, exc.column]
    return _json(422, {"detail": [{"loc": loc, "msg": str(exc), "type": exc.kind}]})


def _is_arrow(content_type: str) -> bool:
    """True for an Arrow IPC stream body (parameters after ``;`` ignored)."""
    return content_type.partition(";")[0].strip().lower() == ARROW_STREAM


def _personalized_param(query: str) -> bool:
    """``personalized`` of an Arrow batch, from the query string (default true)."""
    values = parse_qs(query, keep_blank_values=True).get("personalized")
    if not values:
        return True
    if len(values) == 1 and values[0].lower() in ("true", "false"):
        return values[0].lower() == "true"
    raise ColumnarBodyError(
        "personalized", "query parameter 'personalized' must be true or false once", kind="bool"
    )


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
        self,
        *,
        holder: ModelHolder,
        metrics: ServiceMetrics,
        schemas: RequestSchemas,
        rollout: Rollout,
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.rollout = rollout
        self.score_model = schemas.score
        self.batch_model = schemas.batch
        self.max_batch_rows = schemas.max_batch_rows

    def single(self, body: bytes, path: str = "/v1/score") -> Reply:
        active = self.holder.current  # read once: a concurrent swap cannot mix versions
        if active is None:
            return NOT_READY
        try:
            req = self.score_model.model_validate_json(body)
        except ValidationError as exc:
            return _invalid(exc)
        routed = self.rollout.route(req.impression_id, req.user_id)
        if routed.arm is Arm.CANARY:
            canary = self.holder.canary
            if canary is not None:
                active = canary
            else:  # no canary in this worker: control answers, and is counted
                routed = Routed(Arm.CONTROL, routed.impression)
        personalized = req.personalized
        try:
            raw = active.scorer.score_one(req.features, personalized=personalized)
            value, conservative = active.breaker.apply_one(raw, track=personalized)
        except Exception as exc:
            self.rollout.failed(routed.arm)
            return _failed(path, exc)
        self.rollout.served(routed, value, conservative=conservative, trips=active.breaker.trips)
        self.metrics.count_rows(1, personalized=personalized, conservative=conservative)
        if routed.arm is Arm.CONTROL:
            self.metrics.breaker_state(active.breaker.is_open)
        rid = req.request_id  # matches ^[A-Za-z0-9._:-]+$: safe inside a JSON string
        return 200, (
            f'{{"score":{value!r},"model_version":"{active.version}",'
            f'"personalized":{_flag(personalized)},"conservative":{_flag(conservative)},'
            f'"request_id":{"null" if rid is None else chr(34) + rid + chr(34)},'
            f'"arm":"{routed.arm.label}"}}'
        ).encode()

    def batch(
        self,
        body: bytes,
        path: str = "/v1/score/batch",
        *,
        content_type: str = "application/json",
        query: str = "",
    ) -> Reply:
        """A JSON batch (``{"rows": [...]}``), or an Arrow IPC stream with
        ``personalized`` in the query string."""
        active = self.holder.current
        if active is None:
            return NOT_READY
        # A JSON body is validated here; an Arrow body is read column by column while
        # scoring (its errors name the column).
        arrow = _is_arrow(content_type)
        try:
            if arrow:
                personalized = _personalized_param(query)
            else:
                req = self.batch_model.model_validate_json(body)
                personalized = req.personalized
        except ValidationError as exc:
            return _invalid(exc)
        except ColumnarBodyError as exc:
            return _columnar_invalid(exc, "query")
        try:
            if arrow:
                raw = active.scorer.score_arrow(
                    body, personalized=personalized, max_rows=self.max_batch_rows
                )
            else:
                raw = active.scorer.score(req.rows, personalized=personalized)
            scores, conservative = active.breaker.apply(raw, track=personalized)
        except ColumnarBodyError as exc:
            return _columnar_invalid(exc)
        except Exception as exc:
            return _failed(path, exc)
        n = len(scores)
        self.metrics.count_rows(n, personalized=personalized, conservative=conservative)
        self.metrics.breaker_state(active.breaker.is_open)
        # 9 significant digits (relative error < 1e-8): one format call instead of n reprs
        return 200, (
            f'{{"scores":[{("%.9g," * n)[:-1] % tuple(scores.tolist())}],'
            f'"model_version":"{active.version}","personalized":{_flag(personalized)},'
            f'"conservative":{_flag(conservative)},"rows":{n}}}'
        ).encode()


__all__ = ["NOT_READY", "TOO_LARGE", "Reply", "ScoreHandlers"]
