"""The real-time scoring service (FastAPI + uvicorn) over the signed global model."""

from server.api.core.config import Settings, get_settings
from server.api.holder import ActiveModel, ModelHolder, prepare_model
from server.api.main import API_PREFIX, ServeConfigError, create_app

__all__ = [
    "API_PREFIX",
    "ActiveModel",
    "ModelHolder",
    "ServeConfigError",
    "Settings",
    "create_app",
    "get_settings",
    "prepare_model",
]
