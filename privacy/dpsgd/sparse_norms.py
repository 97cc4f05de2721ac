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
            a_norm = torch.linalg.vector_norm(activations[:, 0], dim=1)
            g_norm = torch.linalg.vector_norm(backprops[:, 0], dim=1)
            out += (a_norm * g_norm).pow(2)
        elif t * t * (d_in + d_out) <= t * d_in * d_out:
            # float64: the Gram identity subtracts large cross terms, and a user's rows
            # whose gradients nearly cancel would otherwise come out as norm 0 (unclipped)
            a64, g64 = activations.double(), backprops.double()
            aa = torch.bmm(a64, a64.transpose(1, 2))
            gg = torch.bmm(g64, g64.transpose(1, 2))
            out += (aa * gg).sum((1, 2)).clamp(min=0).to(out.dtype)
        else:
            out += torch.bmm(backprops.transpose(1, 2), activations).pow(2).sum((1, 2))
    if bias:
        out += torch.linalg.vector_norm(backprops.sum(1), dim=1).pow(2)
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


def embedding_norm_sq(indices: torch.Tensor, backprops: torch.Tensor) -> torch.Tensor:
    """Squared per-example gradient norm of an embedding table.

    ``indices`` is ``[N, L]`` and ``backprops`` ``[N, L, D]``. Example ``i``'s gradient
    has row ``r`` equal to the sum of ``backprops[i, j]`` over the positions ``j`` with
    ``indices[i, j] == r``: repeated indices are summed *before* squaring (after sorting
    each example's indices, equal ones are neighbours). Summing first also keeps float32
    exact where repeated rows' gradients cancel. Positions that must not count
    (padding) are expected to carry zero backprops.
    """
    n, lookups = indices.shape
    if n == 0 or lookups == 0:
        return backprops.new_zeros(n)
    dim = backprops.shape[2]
    ordered, perm = indices.sort(dim=1)
    grads = backprops.gather(1, perm.unsqueeze(2).expand(-1, -1, dim))
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    flat_starts = starts.reshape(-1)
    segment = flat_starts.cumsum(0) - 1  # one id per (example, distinct row)
    num_segments = int(segment[-1]) + 1
    rows = backprops.new_zeros(num_segments, dim)
    rows.index_add_(0, segment, grads.reshape(-1, dim))
    owner = torch.arange(n, device=indices.device).repeat_interleave(lookups)[flat_starts]
    out = backprops.new_zeros(n)
    out.index_add_(0, owner, rows.pow(2).sum(1))
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
    "clip_factors",
    "embedding_clipped_sum_",
    "embedding_norm_sq",
    "linear_clipped_sum_",
    "linear_norm_sq",
]
