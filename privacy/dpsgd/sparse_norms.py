"""Per-example gradient norms and clipped gradient sums without per-example gradients.

Both ``nn.Linear`` and ``nn.Embedding`` have per-example gradients that are cheap
functions of what the layer saw (activations / indices) and what came back
(output gradients). The norms come from those (the "ghost norm" trick for linear
layers; index matching for embeddings), and the clipped *sum* over the batch is a
single matrix product or ``index_add`` weighted by the clip factors. Nothing of
shape ``[N, *parameter]`` is ever built: an embedding's cost is ``O(N * L * D)``,
independent of the table size.

Shapes: ``N`` examples, ``T`` positions per example at which a linear layer was
applied (1 for plain ``[N, d]`` inputs; more for sequence inputs or a layer called
several times), ``L`` indices per example looked up in an embedding, ``D`` the
embedding dimension. Backprops are per-example loss gradients (already multiplied
by ``N`` for a mean-reduced loss).
"""

from __future__ import annotations

import torch

# Up to this many lookups per example, matching indices through an [N, L, L] Gram
# matrix beats sorting (it is a batched matmul); beyond it, sort-based grouping wins.
GRAM_MAX_LOOKUPS = 64

# Opacus' DPOptimizer adds this to the norm before dividing (keeps a zero gradient finite).
_NORM_EPS = 1e-6


def linear_norm_sq(
    activations: torch.Tensor, backprops: torch.Tensor, *, weight: bool, bias: bool
) -> torch.Tensor:
    """Squared per-example gradient norm of a linear layer's weight and/or bias.

    ``activations`` is ``[N, T, d_in]`` and ``backprops`` ``[N, T, d_out]``. For
    ``T == 1`` the weight gradient ``g a^T`` has norm ``|g| |a|``; for ``T > 1`` the
    cheaper of the Gram-matrix identity ``sum_ts (a_t.a_s)(g_t.g_s)`` and the explicit
    ``[N, d_out, d_in]`` per-example gradient is used (as Opacus' ghost clipping does).
    """
    n, t, d_in = activations.shape
    d_out = backprops.shape[2]
    out = backprops.new_zeros(n)
    if weight:
        if t == 1:
            a = activations[:, 0]
            g = backprops[:, 0]
            out += a.pow(2).sum(1) * g.pow(2).sum(1)
        elif t * t * (d_in + d_out) <= t * d_in * d_out:
            aa = torch.bmm(activations, activations.transpose(1, 2))
            gg = torch.bmm(backprops, backprops.transpose(1, 2))
            out += (aa * gg).sum((1, 2)).clamp(min=0)
        else:
            out += torch.bmm(backprops.transpose(1, 2), activations).pow(2).sum((1, 2))
    if bias:
        out += backprops.sum(1).pow(2).sum(1)
    return out


def linear_clipped_sum_(
    grad_weight: torch.Tensor | None,
    grad_bias: torch.Tensor | None,
    activations: torch.Tensor,
    backprops: torch.Tensor,
    coeff: torch.Tensor,
) -> None:
    """Add ``sum_i coeff_i * grad_i`` of a linear layer into the given gradient tensors."""
    d_in = activations.shape[2]
    d_out = backprops.shape[2]
    scaled = (backprops * coeff.view(-1, 1, 1)).reshape(-1, d_out)
    if grad_weight is not None:
        grad_weight.addmm_(scaled.t(), activations.reshape(-1, d_in))
    if grad_bias is not None:
        grad_bias.add_(scaled.sum(0))


def embedding_norm_sq(
    indices: torch.Tensor, backprops: torch.Tensor, *, num_embeddings: int
) -> torch.Tensor:
    """Squared per-example gradient norm of an embedding table.

    ``indices`` is ``[N, L]`` and ``backprops`` ``[N, L, D]``. Example ``i``'s gradient
    has row ``r`` equal to the sum of ``backprops[i, j]`` over the positions ``j`` with
    ``indices[i, j] == r``: repeated indices are summed *before* squaring. Positions
    that must not count (padding) are expected to carry zero backprops.
    """
    n, lookups = indices.shape
    if n == 0 or lookups == 0:
        return backprops.new_zeros(n)
    if lookups <= GRAM_MAX_LOOKUPS:
        return _embedding_norm_sq_gram(indices, backprops)
    return _embedding_norm_sq_sorted(indices, backprops, num_embeddings=num_embeddings)


def _embedding_norm_sq_gram(indices: torch.Tensor, backprops: torch.Tensor) -> torch.Tensor:
    # |sum_j e_{idx_j} g_j^T|^2 = sum_{j,k} [idx_j == idx_k] g_j . g_k
    gram = torch.bmm(backprops, backprops.transpose(1, 2))
    same_row = indices.unsqueeze(2) == indices.unsqueeze(1)
    return (gram * same_row).sum((1, 2)).clamp(min=0)


def _embedding_norm_sq_sorted(
    indices: torch.Tensor, backprops: torch.Tensor, *, num_embeddings: int
) -> torch.Tensor:
    n = indices.shape[0]
    dim = backprops.shape[2]
    example = torch.arange(n, device=indices.device).unsqueeze(1)
    keys = (example * num_embeddings + indices).reshape(-1)
    unique, inverse = torch.unique(keys, return_inverse=True)
    rows = backprops.new_zeros(unique.shape[0], dim)
    rows.index_add_(0, inverse, backprops.reshape(-1, dim))
    out = backprops.new_zeros(n)
    out.index_add_(0, torch.div(unique, num_embeddings, rounding_mode="floor"), rows.pow(2).sum(1))
    return out


def embedding_clipped_sum_(
    grad: torch.Tensor, indices: torch.Tensor, backprops: torch.Tensor, coeff: torch.Tensor
) -> None:
    """Add ``sum_i coeff_i * grad_i`` of an embedding table into ``grad`` (touched rows only)."""
    dim = backprops.shape[2]
    scaled = (backprops * coeff.view(-1, 1, 1)).reshape(-1, dim)
    grad.index_add_(0, indices.reshape(-1), scaled)


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """``min(1, C / (norm + 1e-6))``: exactly Opacus' flat clipping factor."""
    return (max_grad_norm / (norms + _NORM_EPS)).clamp(max=1.0)


__all__ = [
    "GRAM_MAX_LOOKUPS",
    "clip_factors",
    "embedding_clipped_sum_",
    "embedding_norm_sq",
    "linear_clipped_sum_",
    "linear_norm_sq",
]
