"""Centralized evaluation on data the platform itself holds (never partner rows)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedctr.models import CTRModel, log_loss, predict_proba, roc_auc
from fedctr.models.logs.reader import EncodedData


@dataclass(frozen=True)
class GlobalMetrics:
    num_examples: int
    auc: float
    logloss: float
    mean_prediction: float
    base_rate: float

    def as_dict(self) -> dict[str, float]:
        return {
            "num-examples": float(self.num_examples),
            "auc": self.auc,
            "logloss": self.logloss,
            "mean-prediction": self.mean_prediction,
            "base-rate": self.base_rate,
        }

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> GlobalMetrics:
        """Back from :meth:`as_dict` (a round-log line, where a NaN was written as null)."""

        def number(key: str) -> float:
            value = values[key]
            return math.nan if value is None else float(value)

        return cls(
            num_examples=int(number("num-examples")),
            auc=number("auc"),
            logloss=number("logloss"),
            mean_prediction=number("mean-prediction"),
            base_rate=number("base-rate"),
        )


def evaluate_global(model: CTRModel, data: EncodedData) -> GlobalMetrics:
    """AUC, log loss and calibration summary of ``model`` on ``data``."""
    x_cat, x_num, x_dense, y = data.tensors()
    with torch.no_grad():
        probs = predict_proba(model, x_cat, x_num, x_dense)
    labels = y.numpy()
    return GlobalMetrics(
        num_examples=len(labels),
        auc=roc_auc(labels, probs),
        logloss=log_loss(labels, probs),
        mean_prediction=float(probs.mean()),
        base_rate=float(labels.mean()),
    )


__all__ = ["GlobalMetrics", "evaluate_global"]
