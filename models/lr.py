"""Logistic regression over hashed categoricals and numeric features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedctr.models.base import CTRModel, register_model
from fedctr.models.config import ModelConfig
from fedctr.models.layers import FirstOrder, numeric_or_zero
from fedctr.models.spec import FeatureSpec


@dataclass(frozen=True)
class LRConfig(ModelConfig):
    """Logistic regression takes no options: the spec alone sets its size."""

    name: ClassVar[str] = "lr"


@register_model(LRConfig)
class LogisticRegression(CTRModel):
    """``sum_f w[bucket_f] + w_num . x_num + b``: the baseline every other model must beat."""

    def __init__(self, spec: FeatureSpec, config: LRConfig) -> None:
        super().__init__(spec, config)
        self.first_order = FirstOrder(spec.bucket_sizes or (1,))
        self.has_cat = spec.num_categorical > 0
        self.linear = nn.Linear(max(spec.num_numeric, 1) + spec.dense_dim(), 1)

    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        out = self.linear(torch.cat([numeric_or_zero(x_num), x_dense], dim=1)).squeeze(1)
        if self.has_cat:
            out = out + self.first_order(x_cat)
        return out
