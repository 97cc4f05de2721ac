"""Service-wide configuration (``core/config.py`` as in the FastAPI full-stack template)."""

from fedctr.server.scoring.api.core.config import ENV_PREFIX, Settings, get_settings

__all__ = ["ENV_PREFIX", "Settings", "get_settings"]
