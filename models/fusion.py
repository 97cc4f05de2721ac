"""Multimodal fusion CTR model: text + image (+ behaviour) vectors with tabular features.

Each modality is projected to ``modality_proj`` (128), the projections are
concatenated, passed through ReLU and fused to ``fused_dim`` (64); the fused
representation is joined with the tabular DeepFM-style part and a CTR head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fedctr.models.base import CTRModel, register_model
from fedctr.models.config import CHECK, ModelConfig, layer_sizes
from fedctr.models.errors import FeatureSpecError
from fedctr.models.fm import fm_interaction
from fedctr.models.layers import FieldEmbedding, FirstOrder, mlp, numeric_or_zero
from fedctr.models.spec import FeatureSpec


@dataclass(frozen=True)
class FusionConfig(ModelConfig):
    """Each modality projected to ``modality_proj``, fused to ``fused_dim``; the tabular
    part as in DeepFM (``embed_dim``, MLP widths ``hidden``)."""

    name: ClassVar[str] = "fusion"
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    modality_proj: int = 128
    fused_dim: int = 64

    def __post_init__(self) -> None:
        for key in ("embed_dim", "modality_proj", "fused_dim"):
            CHECK.integer(getattr(self, key), key, minimum=1)
        object.__setattr__(self, "hidden", layer_sizes("hidden", self.hidden))


@register_model(FusionConfig)
class FusionCTR(CTRModel):
    """Project each modality, fuse, join with the tabular part, predict the click."""

    def __init__(self, spec: FeatureSpec, config: FusionConfig) -> None:
        super().__init__(spec, config)
        self.modalities = tuple(m for m in ("text", "image", "behaviour") if spec.dense_dim(m) > 0)
        if not self.modalities:
            raise FeatureSpecError(
                "the fusion model needs at least one [[embedding]] column in the feature spec"
            )
        # Column slices of x_dense belonging to each modality, in spec order.
        slices: dict[str, list[int]] = {m: [] for m in self.modalities}
        start = 0
        for feature in spec.embedding:
            slices[feature.modality].extend(range(start, start + feature.dim))
            start += feature.dim
        for m in self.modalities:
            self.register_buffer(
                f"idx_{m}", torch.tensor(slices[m], dtype=torch.long), persistent=False
            )
        self.projections = nn.ModuleDict(
            {m: nn.Linear(len(slices[m]), config.modality_proj) for m in self.modalities}
        )
        self.fuse = nn.Linear(config.modality_proj * len(self.modalities), config.fused_dim)
        self.has_cat = spec.num_categorical > 0
        sizes = spec.bucket_sizes or (1,)
        self.first_order = FirstOrder(sizes)
        self.factors = FieldEmbedding(sizes, config.embed_dim)
        num_in = max(spec.num_numeric, 1)
        self.linear = nn.Linear(num_in, 1)
        deep_in = spec.num_categorical * config.embed_dim + num_in + config.fused_dim
        self.deep, width = mlp(deep_in, config.hidden)
        self.head = nn.Linear(width, 1)

    def fused(self, x_dense: torch.Tensor) -> torch.Tensor:
        """The 64-d fused multimodal representation."""
        projected = [
            self.projections[m](x_dense.index_select(1, getattr(self, f"idx_{m}")))
            for m in self.modalities
        ]
        return torch.relu(self.fuse(torch.relu(torch.cat(projected, dim=1))))

    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        num = numeric_or_zero(x_num)
        out = self.linear(num).squeeze(1)
        parts = [num, self.fused(x_dense)]
        if self.has_cat:
            v = self.factors(x_cat)
            out = out + self.first_order(x_cat) + fm_interaction(v)
            parts.insert(0, v.flatten(1))
        return out + self.head(self.deep(torch.cat(parts, dim=1))).squeeze(1)
