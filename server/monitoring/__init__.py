"""Alerts on served traffic and on federation rounds: detectors, the alert log and the
webhook notifier. Shared by the scoring service and the operator console; it imports
neither. Prometheus users get the same rules as ``prometheus-rules.yml`` here."""

from fedctr.server.monitoring.detectors import (
    Alert,
    Detector,
    ErrorRate,
    PredictionDrift,
    RateDrop,
    Window,
    cpa_spike,
    ctr_drop,
    partner_shortfall,
)
from fedctr.server.monitoring.notify import AlertLog, Notifier, WebhookNotifier

__all__ = [
    "Alert",
    "AlertLog",
    "Detector",
    "ErrorRate",
    "Notifier",
    "PredictionDrift",
    "RateDrop",
    "WebhookNotifier",
    "Window",
    "cpa_spike",
    "ctr_drop",
    "partner_shortfall",
]
