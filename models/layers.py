"""Building blocks shared by the CTR models.

Every trainable tensor sits inside an ``nn.Linear`` or ``nn.Embedding``: Opacus'
ghost clipping (and fedctr's sparse path) only know those layers, and a bare
``nn.Parameter`` on a module without a grad sampler makes DP-SGD crawl.
"""

from __future__ import annotations

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    """One shared ``nn.Embedding`` for all categorical fields, offset per field.

    A single table (rather than one per field) keeps DP-SGD to one layer hook and one
    sparse norm computation.
    """

    def __init__(self, bucket_sizes: tuple[int, ...], dim: int) -> None:
        super().__init__()
        offsets = [0]
        for size in bucket_sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.num_fields = len(bucket_sizes)
        self.embedding = nn.Embedding(max(sum(bucket_sizes), 1), dim)
        nn.init.normal_(self.embedding.weight, std=0.01)

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        """``[N, F]`` per-field bucket ids to ``[N, F, dim]`` vectors."""
        return self.embedding(x_cat + self.offsets)


class FirstOrder(FieldEmbedding):
    """One scalar weight per bucket, summed over the fields: the linear part of LR, FM,
    DeepFM and fusion. Zero at start, so an untrained model predicts from its bias."""

    def __init__(self, bucket_sizes: tuple[int, ...]) -> None:
        super().__init__(bucket_sizes, 1)
        nn.init.zeros_(self.embedding.weight)

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        """``[N, F]`` per-field bucket ids to ``[N]`` logit contributions."""
        return super().forward(x_cat).sum(dim=(1, 2))


def mlp(in_dim: int, hidden: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """ReLU MLP; returns the network and its output width."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers), width


def numeric_or_zero(x_num: torch.Tensor) -> torch.Tensor:
    """Models keep a numeric ``nn.Linear`` (it carries the global bias); feed a zero
    column when the spec has no numeric features."""
    if x_num.shape[1] == 0:
        return x_num.new_zeros((x_num.shape[0], 1))
    return x_num


__all__ = ["FieldEmbedding", "FirstOrder", "mlp", "numeric_or_zero"]
