"""The real-time scoring service (FastAPI + uvicorn) over the signed global model.

Names are imported lazily: ``python -m server.api.serve`` must be able to set
BLAS thread limits before anything imports numpy.
"""

from __future__ import annotations

from fedctr.lazy import lazy_exports

_EXPORTS = {
    "API_PREFIX": "server.api.main",
    "ActiveModel": "server.api.holder",
    "ModelHolder": "server.api.holder",
    "ServeConfigError": "server.api.main",
    "Settings": "server.api.core.config",
    "build_serve_parser": "server.api.serve",
    "create_app": "server.api.main",
    "get_settings": "server.api.core.config",
    "prepare_model": "server.api.holder",
    "serve_main": "server.api.serve",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
