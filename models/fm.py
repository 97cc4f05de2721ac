"""Factorization machine (Rendle, 2010) with numeric features in the linear part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedctr.models.base import CTRModel, register_model
from fedctr.models.config import CHECK, ModelConfig
from fedctr.models.layers import FieldEmbedding, FirstOrder, numeric_or_zero
from fedctr.models.spec import FeatureSpec


def fm_interaction(v: torch.Tensor) -> torch.Tensor:
    """Pairwise interactions ``sum_{i<j} <v_i, v_j>`` in O(F k): ``[N,F,k] -> [N]``."""
    square_of_sum = v.sum(dim=1).pow(2)
    sum_of_square = v.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


@dataclass(frozen=True)
class FMConfig(ModelConfig):
    """``embed_dim``: the width of each categorical's factor vector."""

    name: ClassVar[str] = "fm"
    embed_dim: int = 8

    def __post_init__(self) -> None:
        CHECK.integer(self.embed_dim, "embed_dim", minimum=1)


@register_model(FMConfig)
class FactorizationMachine(CTRModel):
    """First-order weights plus factorized pairwise interactions of the categoricals."""

    def __init__(self, spec: FeatureSpec, config: FMConfig) -> None:
        super().__init__(spec, config)
        sizes = spec.bucket_sizes or (1,)
        self.first_order = FirstOrder(sizes)
        self.factors = FieldEmbedding(sizes, config.embed_dim)
        self.has_cat = spec.num_categorical > 0
        self.linear = nn.Linear(max(spec.num_numeric, 1) + spec.dense_dim(), 1)

    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        out = self.linear(torch.cat([numeric_or_zero(x_num), x_dense], dim=1)).squeeze(1)
        if self.has_cat:
            out = out + self.first_order(x_cat) + fm_interaction(self.factors(x_cat))
        return out
