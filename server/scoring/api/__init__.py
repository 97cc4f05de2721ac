"""The real-time scoring service (FastAPI + uvicorn) over the signed global model.

Names are imported lazily: ``python -m fedctr.server.scoring.api.serve`` must be able to set
BLAS thread limits before anything imports numpy.
"""

from __future__ import annotations

from fedctr.lazy import lazy_exports

_EXPORTS = {
    "API_PREFIX": "fedctr.server.scoring.api.main",
    "ActiveModel": "fedctr.server.scoring.api.holder",
    "ModelHolder": "fedctr.server.scoring.api.holder",
    "ServeConfigError": "fedctr.server.scoring.api.main",
    "Settings": "fedctr.server.scoring.api.core.config",
    "build_serve_parser": "fedctr.server.scoring.api.serve",
    "create_app": "fedctr.server.scoring.api.main",
    "get_settings": "fedctr.server.scoring.api.core.config",
    "prepare_model": "fedctr.server.scoring.api.holder",
    "serve_main": "fedctr.server.scoring.api.serve",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
