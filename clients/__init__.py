"""The partner node: read the partner's own logs through the feature spec, train locally
with DP-SGD under the partner's own budget, refuse rounds over budget, ledger every
release. Raw rows never leave this package's process."""

from fedctr.clients.config import (
    PartnerConfig,
    PrivacySettings,
    TrainingSettings,
    load_partner_config,
)
from fedctr.clients.errors import PartnerConfigError, PartnerError
from fedctr.clients.node import EvalReport, LocalRound, PartnerNode

__all__ = [
    "EvalReport",
    "LocalRound",
    "PartnerConfig",
    "PartnerConfigError",
    "PartnerError",
    "PartnerNode",
    "PrivacySettings",
    "TrainingSettings",
    "load_partner_config",
]
