"""Prediction and the two metrics every CTR report uses: ROC AUC and log loss."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve with ties averaged (Mann-Whitney U); NaN if one class."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def log_loss(y_true: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    x_cat: torch.Tensor,
    x_num: torch.Tensor,
    x_dense: torch.Tensor,
    *,
    batch_size: int = 8192,
) -> np.ndarray:
    """Click probabilities of a model on tensors, in eval mode, batched."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x_cat), batch_size):
        sl = slice(start, start + batch_size)
        out.append(torch.sigmoid(model(x_cat[sl], x_num[sl], x_dense[sl])).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


__all__ = ["log_loss", "predict_proba", "roc_auc"]
