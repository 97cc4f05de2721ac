"""DCN-v2 (Wang et al., 2021): low-rank cross network and a parallel deep network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedctr.models.base import CTRModel, register_model
from fedctr.models.config import CHECK, ModelConfig, layer_sizes
from fedctr.models.layers import FieldEmbedding, mlp, numeric_or_zero
from fedctr.models.spec import FeatureSpec


class LowRankCross(nn.Module):
    """``x_{l+1} = x_0 * (U (V^T x_l) + b) + x_l`` with rank ``r`` (all in ``nn.Linear``)."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        return x0 * self.up(self.down(xl)) + xl


@dataclass(frozen=True)
class DCNv2Config(ModelConfig):
    """``cross_layers`` low-rank crosses of rank ``cross_rank`` beside an MLP of widths
    ``hidden``, over embeddings ``embed_dim`` wide."""

    name: ClassVar[str] = "dcnv2"
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    cross_layers: int = 2
    cross_rank: int = 16

    def __post_init__(self) -> None:
        for key in ("embed_dim", "cross_layers", "cross_rank"):
            CHECK.integer(getattr(self, key), key, minimum=1)
        object.__setattr__(self, "hidden", layer_sizes("hidden", self.hidden))


@register_model(DCNv2Config)
class DCNv2(CTRModel):
    """Parallel DCN-v2: cross layers and an MLP over the same input, then a linear head."""

    def __init__(self, spec: FeatureSpec, config: DCNv2Config) -> None:
        super().__init__(spec, config)
        self.has_cat = spec.num_categorical > 0
        self.embed = FieldEmbedding(spec.bucket_sizes or (1,), config.embed_dim)
        in_dim = (
            spec.num_categorical * config.embed_dim + max(spec.num_numeric, 1) + spec.dense_dim()
        )
        self.cross = nn.ModuleList(
            LowRankCross(in_dim, config.cross_rank) for _ in range(config.cross_layers)
        )
        self.deep, width = mlp(in_dim, config.hidden)
        self.head = nn.Linear(in_dim + width, 1)

    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        parts = [numeric_or_zero(x_num), x_dense]
        if self.has_cat:
            parts.insert(0, self.embed(x_cat).flatten(1))
        x0 = torch.cat(parts, dim=1)
        xl = x0
        for layer in self.cross:
            xl = layer(x0, xl)
        return self.head(torch.cat([xl, self.deep(x0)], dim=1)).squeeze(1)
