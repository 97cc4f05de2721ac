"""The aggregator: what the platform runs around Flower's ServerApp.

``strategies/`` (one class per algorithm, the accountable wrapper that checks every
reply against the wire contract), ``orchestrator`` (a run's rounds), ``evaluation``
(on the platform's own data), ``ledger`` (the platform's record of what it accepted),
``publishing`` (sign and register the global model), ``checkpoint``, ``rounds``.
"""

from fedctr.server.platform.errors import (
    NotEnoughPartnersError,
    PlatformConfigError,
    PlatformError,
)

__all__ = ["NotEnoughPartnersError", "PlatformConfigError", "PlatformError"]
