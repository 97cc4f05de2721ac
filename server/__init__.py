"""The platform: aggregation strategies, the run orchestrator, checkpoints, evaluation,
signed publishing to the registry, the platform ledger, and the scoring API.

Submodules are imported explicitly (``server.orchestrator``, ``server.api``) so that
the scoring service does not import Flower and the ServerApp does not import FastAPI.
"""

from server.errors import NotEnoughPartnersError, PlatformConfigError, PlatformError

__all__ = ["NotEnoughPartnersError", "PlatformConfigError", "PlatformError"]
