"""HTTP routes, one module per concern (as in the FastAPI full-stack template)."""

from fedctr.server.scoring.api.routes import health, metrics, model, rollout
from fedctr.server.scoring.api.routes.score import build_score_router

__all__ = ["build_score_router", "health", "metrics", "model", "rollout"]
