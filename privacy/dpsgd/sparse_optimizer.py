"""Opacus' DPOptimizer with fused clipping and noise for the sparse path.

The privacy-relevant arithmetic is Opacus' own, in a different order:

    Opacus:  p.grad = (sum_i c_i g_i + N(0, (sigma C)^2)) / B
    here:    p.grad =  N(0, (sigma C / B)^2) + sum_i (c_i / B) g_i

with ``c_i = min(1, C / (|g_i| + 1e-6))`` over all parameters jointly and ``B`` the
expected batch size (declared, never counted). The noise for *every* parameter
(every row of every embedding table, touched or not) is drawn from the CSPRNG
(:meth:`fedctr.privacy.randomness.SecureRandom.gaussian_`, which says how it resists
floating-point attacks) into one flat buffer whose slices are the parameters'
``.grad``; the clipped sums then land on top of it (only the touched rows of a
table). The accountant hook Opacus attaches runs exactly as in
``DPOptimizer.pre_step``, once per step, with the same noise multiplier and the
declared sample rate.

Bucket selection (``selection``, :mod:`fedctr.privacy.dpsgd.bucket_selection`): before
the noise, the step releases noisy per-row counts and keeps the rows above the
threshold; the tables' noise is then drawn for those rows only and the clipped sum
lands only on them. The accountant hook is given the composed noise multiplier by
the implementation (:class:`fedctr.privacy.dpsgd.sparse_impl.FedctrSparse`).

User-level (``user_level=True``): before each step the loader hands the batch's
:class:`~fedctr.privacy.dpsgd.user_groups.UserGroups` (:meth:`expect_users`); ``c_u``
is then computed from each user's summed gradient and every row of user ``u`` is
weighted by ``c_u``, so the clipped sum is ``sum_u c_u g_u``. A step without its
groups is refused rather than clipped per row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from opacus.optimizers.optimizer import DPOptimizer
from torch import nn

from fedctr.privacy.budget import BucketSelection
from fedctr.privacy.dpsgd.bucket_selection import select_rows
from fedctr.privacy.dpsgd.errors import TrainingLoopError, UnsupportedLayerError
from fedctr.privacy.dpsgd.sparse_norms import clip_factors
from fedctr.privacy.dpsgd.sparse_taps import LayerTaps, RecordedBatch
from fedctr.privacy.dpsgd.user_groups import UserGroups
from fedctr.privacy.randomness import SecureRandom


class SparseDPOptimizer(DPOptimizer):
    """DP-SGD step from recorded activations/backprops instead of per-sample gradients."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        taps: LayerTaps,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        rng: SecureRandom,
        user_level: bool = False,
        selection: BucketSelection | None = None,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=None,
            secure_mode=False,
        )
        self._rng = rng
        trainable = taps.parameters()
        optimized = self.params
        if {id(p) for p in trainable} != {id(p) for p in optimized} or len(optimized) != len(
            trainable
        ):
            raise UnsupportedLayerError(
                "the optimizer must hold exactly the model's trainable parameters "
                f"({len(trainable)} tensors, it holds {len(optimized)}): a trainable tensor "
                "outside the optimizer would count in the clipping norm but never be "
                "updated; freeze it with requires_grad_(False) or add it to the optimizer"
            )
        self._taps = taps
        self._buffers: list[tuple[torch.Tensor, list[tuple[nn.Parameter, torch.Tensor]]]] = []
        self.per_sample_norms: torch.Tensor | None = None
        self.per_sample_clip_factor: torch.Tensor | None = None
        self.user_level = user_level
        self._groups: UserGroups | None = None
        self.selection = selection
        # With bucket selection the tables' gradients are kept apart from the flat
        # noise buffers: their noise is drawn for the selected rows only.
        self._tables = {id(p): p for p in taps.embedding_weights()} if selection else {}
        self.selected_rows: dict[nn.Parameter, torch.Tensor] = {}

    def expect_users(self, groups: UserGroups) -> None:
        """The user layout of the next batch (user-level DP; set by the loader)."""
        if not self.user_level:
            raise TrainingLoopError("this optimizer clips per example; it takes no user groups")
        self._groups = groups

    # ---- what Opacus' accountant hook and BatchMemoryManager ask -------
    @property
    def accumulated_iterations(self) -> int:
        """One Poisson batch per step (accumulation is refused by the taps)."""
        return 1

    # ---- the step ------------------------------------------------------
    def pre_step(self, closure: Callable[[], float] | None = None) -> bool:
        """Clip, noise and scale every gradient; then let the accountant count the step."""
        if self._step_skip_queue:
            raise TrainingLoopError(
                "virtual steps (signal_skip_step / BatchMemoryManager) are not supported by "
                "fedctr-sparse; use batches that fit in memory"
            )
        batch = self._taps.batch()
        groups, self._groups = self._groups, None
        if self.user_level and (groups is None or len(groups.user) != batch.batch_size):
            raise TrainingLoopError(
                "user-level DP-SGD clips each user's summed gradient: the batch must come "
                "from the private data_loader, which tells the optimizer its users"
            )
        norms = batch.per_sample_norms(groups)
        coeff = clip_factors(norms, self.max_grad_norm)
        # A unit whose gradient overflowed (inf/NaN from weights the platform chose) is
        # dropped from the sum, never clipped to NaN: a NaN would land exactly on the rows
        # it touched and show them in the release. Dropping only removes a contribution.
        finite = torch.isfinite(norms)
        kept = None
        if not bool(finite.all()):
            coeff = torch.where(finite, coeff, torch.zeros_like(coeff))
            kept = finite if groups is None else groups.spread(finite)
        scale = 1.0 / self.expected_batch_size
        std = self.noise_multiplier * self.max_grad_norm * scale
        masks = self._select(batch, groups, units=len(norms))
        grads = self._noise(std=std)
        for table, mask in masks.items():
            grads[table] = self._table_noise(table, mask, std=std)
        row_coeff = coeff if groups is None else groups.spread(coeff)
        batch.clipped_sum_(grads, row_coeff * scale, masks, kept)
        self.selected_rows = masks
        self._taps.clear()
        self.per_sample_norms = norms
        self.per_sample_clip_factor = coeff
        if self.step_hook:
            self.step_hook(self)
        self._is_last_step_skipped = False
        return True

    def _select(
        self, batch: RecordedBatch, groups: UserGroups | None, *, units: int
    ) -> dict[nn.Parameter, torch.Tensor]:
        """Bucket selection's released counts -> each table's selected rows (or {})."""
        if self.selection is None:
            return {}
        touched = batch.touched(groups)
        tables = [(p.shape[0], t, pad) for p, t, pad in touched]
        masks = select_rows(
            tables,
            units=units,
            noise_multiplier=self.selection.noise_multiplier,
            threshold=self.selection.threshold,
            rng=self._rng,
        )
        return {p: m for (p, _, _), m in zip(touched, masks, strict=True)}

    def _table_noise(self, table: nn.Parameter, mask: torch.Tensor, *, std: float) -> torch.Tensor:
        """A table's gradient: N(0, std^2) on the selected rows, zero elsewhere."""
        grad = table.grad
        if grad is None or grad.shape != table.shape:
            grad = torch.zeros_like(table)
        else:
            grad.zero_()
        rows = mask.nonzero().squeeze(1)
        if len(rows):
            noise = torch.empty(len(rows), *table.shape[1:], dtype=table.dtype)
            self._rng.gaussian_(noise, std=std)
            grad.index_copy_(0, rows, noise)
        table.grad = grad
        return grad

    def _noise(self, *, std: float) -> dict[nn.Parameter, torch.Tensor]:
        """Fill every parameter's ``.grad`` with N(0, std^2) and return the gradients
        (with bucket selection, every parameter but the embedding tables)."""
        if not self._buffers:
            dense = [p for p in self.params if id(p) not in self._tables]
            self._buffers = _flat_buffers(dense)
        grads: dict[nn.Parameter, torch.Tensor] = {}
        for flat, views in self._buffers:
            self._rng.gaussian_(flat, std=std)  # std 0 (sigma 0, tests only): zeros
            for p, view in views:
                p.grad = view
                grads[p] = view
        return grads

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the recorded batch and clear ``.grad`` (the noise buffer is reused)."""
        self._taps.clear()  # the user groups stay: the loader set them for this batch
        self.original_optimizer.zero_grad(set_to_none)

    # ---- Opacus' per-sample-gradient stages do not exist here ----------
    def clip_and_accumulate(self) -> None:
        raise NotImplementedError("fedctr-sparse clips and noises in one fused pre_step()")

    def add_noise(self) -> None:
        raise NotImplementedError("fedctr-sparse clips and noises in one fused pre_step()")

    def scale_grad(self) -> None:
        raise NotImplementedError("fedctr-sparse clips and noises in one fused pre_step()")


def _flat_buffers(
    params: list[nn.Parameter],
) -> list[tuple[torch.Tensor, list[tuple[nn.Parameter, torch.Tensor]]]]:
    """One contiguous buffer per (dtype, device); each parameter's gradient is a slice."""
    groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    out = []
    for (dtype, device), members in groups.items():
        flat = torch.empty(sum(p.numel() for p in members), dtype=dtype, device=device)
        views, offset = [], 0
        for p in members:
            views.append((p, flat[offset : offset + p.numel()].view_as(p)))
            offset += p.numel()
        out.append((flat, views))
    return out


__all__ = ["SparseDPOptimizer"]
