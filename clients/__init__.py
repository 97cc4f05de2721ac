"""The partner node: read the partner's own logs through the feature spec, train locally
with DP-SGD under the partner's own budget, refuse rounds over budget, ledger every
release. Raw rows never leave this package's process."""

from clients.config import PartnerConfig, PrivacySettings, TrainingSettings, load_partner_config
from clients.data import BadRowPolicy, EncodedData, LoadReport, RowIssue, read_partner_log
from clients.errors import DataFileError, PartnerConfigError, PartnerError
from clients.node import EvalReport, LocalRound, PartnerNode

__all__ = [
    "BadRowPolicy",
    "DataFileError",
    "EncodedData",
    "EvalReport",
    "LoadReport",
    "LocalRound",
    "PartnerConfig",
    "PartnerConfigError",
    "PartnerError",
    "PartnerNode",
    "PrivacySettings",
    "RowIssue",
    "TrainingSettings",
    "load_partner_config",
    "read_partner_log",
]
