"""The real-time scoring service (FastAPI + uvicorn) over the signed global model.

Names are imported lazily: ``python -m server.api.serve`` must be able to set
BLAS thread limits before anything imports numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'server.api' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
