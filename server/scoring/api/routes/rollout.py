"""The A/B rollout: its state and both arms' figures, the ramp, rollback, feedback.

Reading is open (counts and rates, never a feature value or an id). Changing the
rollout, and posting feedback (which can trigger a rollback), needs the operator's
bearer token when one is configured, and otherwise comes from loopback only.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from fedctr.server.scoring.api.schemas import ErrorResponse, RequestId
from fedctr.server.scoring.rollout import BoardError, Rollback, Rollout

router = APIRouter(tags=["rollout"])
LOOPBACK = frozenset({"127.0.0.1", "::1"})


async def get_rollout(request: Request) -> Rollout:
    return request.app.state.rollout


async def require_operator(request: Request) -> None:
    """The bearer token when configured; otherwise a loopback client."""
    token = request.app.state.settings.admin_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(), token.get_secret_value().encode()
        ):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="operator token required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return
    if request.client is None or request.client.host not in LOOPBACK:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="without an admin token the rollout is changed from loopback only",
        )


RolloutDep = Annotated[Rollout, Depends(get_rollout)]
Operator = [Depends(require_operator)]
DENIED: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not JSON"},
    401: {"model": ErrorResponse, "description": "missing or wrong operator token"},
    403: {"model": ErrorResponse, "description": "not from loopback and no token configured"},
}


class ShareChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canary_share: float = Field(ge=0, le=1, description="share of keyed traffic for the canary")


class Feedback(BaseModel):
    """An outcome of a served impression, by its id (no feature values)."""

    model_config = ConfigDict(extra="forbid")
    impression_id: RequestId
    clicked: StrictBool = False
    converted: StrictBool = False


class FeedbackResult(BaseModel):
    joined: bool = Field(
        description="false: no recorded impression has this id (never served with one, "
        "or evicted from the bounded table); counted as unknown"
    )
    arm: str | None = None


@router.get("/rollout", summary="Canary share, rollback state, and both arms' figures")
async def rollout_state(rollout: RolloutDep, request: Request) -> dict[str, Any]:
    report = rollout.report()
    holder = request.app.state.holder
    for label, active in (("control", holder.current), ("canary", holder.canary)):
        report["arms"][label]["model_version"] = None if active is None else active.version
        report["arms"][label]["breaker"] = None if active is None else active.breaker_state()
    return report


@router.get("/alerts", summary="Recent alerts on served traffic and feedback, newest last")
async def alerts(request: Request, limit: int = 100) -> dict[str, Any]:
    return {"alerts": request.app.state.alerts.recent(max(1, min(limit, 500)))}


@router.put(
    "/rollout/share",
    dependencies=Operator,
    responses={**DENIED, 409: {"model": ErrorResponse, "description": "rolled back, or no canary"}},
    summary="Ramp: change the canary's share of keyed traffic (sticky: keys only move up)",
)
async def set_share(change: ShareChange, rollout: RolloutDep) -> dict[str, Any]:
    try:
        generation = rollout.set_share(change.canary_share)
    except (BoardError, ValueError) as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return {"canary_share": rollout.board.share, "generation": generation}


@router.post(
    "/rollout/rollback",
    dependencies=Operator,
    responses=DENIED,
    summary="Send all traffic back to control now",
)
async def roll_back(rollout: RolloutDep) -> dict[str, Any]:
    rollout.board.roll_back(Rollback.OPERATOR)
    return {"canary_share": rollout.board.share, "rolled_back": rollout.board.rollback.name.lower()}


@router.post(
    "/feedback",
    dependencies=Operator,
    response_model=FeedbackResult,
    responses=DENIED,
    summary="Post a click or conversion back by impression id",
)
async def feedback(item: Feedback, rollout: RolloutDep) -> FeedbackResult:
    found = rollout.feedback(item.impression_id, clicked=item.clicked, converted=item.converted)
    if found is None:
        return FeedbackResult(joined=False)
    return FeedbackResult(joined=True, arm=found.arm.label)


__all__ = ["router"]
