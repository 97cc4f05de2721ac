"""DeepFM (Guo et al., 2017): an FM and an MLP sharing one embedding table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedctr.models.base import CTRModel, register_model
from fedctr.models.config import CHECK, ModelConfig, layer_sizes
from fedctr.models.fm import fm_interaction
from fedctr.models.layers import FieldEmbedding, FirstOrder, mlp, numeric_or_zero
from fedctr.models.spec import FeatureSpec


@dataclass(frozen=True)
class DeepFMConfig(ModelConfig):
    """``embed_dim``: the shared embedding width; ``hidden``: the MLP's layer widths."""

    name: ClassVar[str] = "deepfm"
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)

    def __post_init__(self) -> None:
        CHECK.integer(self.embed_dim, "embed_dim", minimum=1)
        object.__setattr__(self, "hidden", layer_sizes("hidden", self.hidden))


@register_model(DeepFMConfig)
class DeepFM(CTRModel):
    """FM for low-order and an MLP for high-order interactions over shared embeddings."""

    def __init__(self, spec: FeatureSpec, config: DeepFMConfig) -> None:
        super().__init__(spec, config)
        sizes = spec.bucket_sizes or (1,)
        self.first_order = FirstOrder(sizes)
        self.factors = FieldEmbedding(sizes, config.embed_dim)
        self.has_cat = spec.num_categorical > 0
        num_in = max(spec.num_numeric, 1) + spec.dense_dim()
        self.linear = nn.Linear(num_in, 1)
        deep_in = spec.num_categorical * config.embed_dim + num_in
        self.deep, width = mlp(deep_in, config.hidden)
        self.deep_out = nn.Linear(width, 1)

    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        dense = torch.cat([numeric_or_zero(x_num), x_dense], dim=1)
        out = self.linear(dense).squeeze(1)
        parts = [dense]
        if self.has_cat:
            v = self.factors(x_cat)
            out = out + self.first_order(x_cat) + fm_interaction(v)
            parts.insert(0, v.flatten(1))
        return out + self.deep_out(self.deep(torch.cat(parts, dim=1))).squeeze(1)
