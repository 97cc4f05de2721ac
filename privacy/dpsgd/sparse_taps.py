"""Record what each trainable layer saw and got back, without parameter gradients.

During a private forward pass the model's trainable parameters are taken out of
the autograd graph (``requires_grad`` is off while the graph is built), so
``loss.backward()`` computes only activation gradients: no dense embedding
gradient of the whole table, no weight gradients that would be thrown away. A
forward hook on every ``nn.Linear`` / ``nn.Embedding`` keeps the layer's input and
a tensor hook on its output keeps the gradient that flows back. From these the
optimizer computes per-example norms and the clipped sum
(:mod:`fedctr.privacy.dpsgd.sparse_norms`).

Any other layer with a trainable tensor is rejected up front: its per-example
gradient would be missing from the norm, and the guarantee with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from opacus.grad_sample import AbstractGradSampleModule
from torch import nn
from torch.utils.hooks import RemovableHandle

from fedctr.privacy.dpsgd.bucket_selection import Touched, touched_rows
from fedctr.privacy.dpsgd.errors import TrainingLoopError, UnsupportedLayerError
from fedctr.privacy.dpsgd.sparse_norms import (
    embedding_clipped_sum_,
    embedding_norm_sq,
    linear_clipped_sum_,
    linear_norm_sq,
)
from fedctr.privacy.dpsgd.user_groups import UserGroups


class _Leaf(torch.autograd.Function):
    """Identity that puts a graph-less layer output into the graph (via ``anchor``),
    so its gradient can be observed; a copy, so later in-place ops stay legal."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


@dataclass
class _Call:
    """One invocation of a layer in the current forward pass."""

    inputs: torch.Tensor
    version: int
    grad: torch.Tensor | None = None

    def capture(self, grad: torch.Tensor) -> None:
        if self.grad is not None:
            raise TrainingLoopError(
                "a second backward pass reached a layer before optimizer.step(); "
                "DP-SGD clips each Poisson batch once: one forward, one backward, one step"
            )
        self.grad = grad


def _grads(calls: list[_Call]) -> list[torch.Tensor]:
    return [c.grad for c in calls if c.grad is not None]


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Several calls of one layer side by side along the position axis (no copy for one)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class _LayerTap(ABC):
    """The calls recorded for one layer and the per-example math for its type."""

    def __init__(self, name: str, module: nn.Module) -> None:
        self.name = name
        self.module = module
        self.calls: list[_Call] = []

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters(recurse=False) if p.requires_grad]

    def used_calls(self) -> list[_Call]:
        """Calls whose output reached the loss (the others contribute a zero gradient)."""
        for call in self.calls:
            if call.inputs._version != call.version:
                raise TrainingLoopError(
                    f"the input of layer '{self.name}' was modified in place after the "
                    "layer used it; its per-example gradients can no longer be computed"
                )
        return [c for c in self.calls if c.grad is not None]

    @abstractmethod
    def norm_sq(
        self, calls: list[_Call], batch_size: int, groups: UserGroups | None = None
    ) -> torch.Tensor:
        """Each example's squared gradient norm over this layer's parameters, ``[B]``;
        with ``groups``, each user's (its rows' gradients summed), ``[U]``."""

    @abstractmethod
    def clipped_sum_(
        self,
        calls: list[_Call],
        grads: dict[nn.Parameter, torch.Tensor],
        coeff: torch.Tensor,
        batch_size: int,
        row_mask: torch.Tensor | None = None,
        kept: torch.Tensor | None = None,
    ) -> None:
        """Add ``sum_i coeff_i g_i`` of this layer into ``grads``: for an embedding with
        ``row_mask``, only into the table rows it selects; with ``kept`` (bool per
        example), only the kept examples' inputs and backprops are read at all."""


class _LinearTap(_LayerTap):
    module: nn.Linear

    def _stack(self, calls: list[_Call], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        d_in, d_out = self.module.in_features, self.module.out_features
        acts = _cat([c.inputs.reshape(n, -1, d_in) for c in calls])
        return acts, _cat([g.reshape(n, -1, d_out) for g in _grads(calls)])

    def norm_sq(
        self, calls: list[_Call], batch_size: int, groups: UserGroups | None = None
    ) -> torch.Tensor:
        a, g = self._stack(calls, batch_size)
        bias = self.module.bias

        def kernel(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return linear_norm_sq(
                a.to(g.dtype),
                g,
                weight=self.module.weight.requires_grad,
                bias=bias is not None and bias.requires_grad,
            )

        return kernel(a, g) if groups is None else _per_user(kernel, a, g, groups)

    def clipped_sum_(
        self,
        calls: list[_Call],
        grads: dict[nn.Parameter, torch.Tensor],
        coeff: torch.Tensor,
        batch_size: int,
        row_mask: torch.Tensor | None = None,
        kept: torch.Tensor | None = None,
    ) -> None:
        a, g = self._stack(calls, batch_size)
        if kept is not None:  # examples dropped from the sum: no inf/NaN may leak through
            keep = kept.view(-1, 1, 1)
            a, g = torch.where(keep, a, 0.0), torch.where(keep, g, 0.0)
        bias = self.module.bias
        linear_clipped_sum_(
            grads.get(self.module.weight),
            grads.get(bias) if bias is not None else None,
            a.to(g.dtype),
            g,
            coeff.to(g.dtype),
        )


class _EmbeddingTap(_LayerTap):
    module: nn.Embedding

    def _stack(self, calls: list[_Call], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        dim = self.module.embedding_dim
        idx = _cat([c.inputs.reshape(n, -1) for c in calls])
        g = _cat([g.reshape(n, -1, dim) for g in _grads(calls)])
        pad = self.module.padding_idx
        if pad is not None:
            # F.embedding never sends gradient to the padding row.
            g = g.masked_fill((idx == pad).unsqueeze(2), 0.0)
        return idx, g

    def norm_sq(
        self, calls: list[_Call], batch_size: int, groups: UserGroups | None = None
    ) -> torch.Tensor:
        idx, g = self._stack(calls, batch_size)
        if groups is None:
            return embedding_norm_sq(idx, g)
        return _per_user(embedding_norm_sq, idx, g, groups)

    def clipped_sum_(
        self,
        calls: list[_Call],
        grads: dict[nn.Parameter, torch.Tensor],
        coeff: torch.Tensor,
        batch_size: int,
        row_mask: torch.Tensor | None = None,
        kept: torch.Tensor | None = None,
    ) -> None:
        idx, g = self._stack(calls, batch_size)
        if row_mask is not None:
            g = torch.where(row_mask[idx].unsqueeze(2), g, 0.0)
        if kept is not None:
            g = torch.where(kept.view(-1, 1, 1), g, 0.0)
        embedding_clipped_sum_(grads[self.module.weight], idx, g, coeff.to(g.dtype))

    def indices(self, calls: list[_Call], batch_size: int) -> torch.Tensor:
        """``[N, L]``: every row index this layer looked up, per example."""
        return _cat([c.inputs.reshape(batch_size, -1) for c in calls])


def _per_user(
    kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    first: torch.Tensor,
    backprops: torch.Tensor,
    groups: UserGroups,
) -> torch.Tensor:
    """A per-example norm kernel applied to users: each class of users of similar row
    counts laid out as padded examples (:meth:`UserGroups.by_width`)."""
    out = backprops.new_zeros(groups.users)
    for users, rows, sub in groups.by_width():
        out[users] = kernel(sub.gather(first[rows]), sub.gather(backprops[rows]))
    return out


def _tap_for(name: str, module: nn.Module) -> _LayerTap:
    if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return _LinearTap(name, module)
    if isinstance(module, nn.Embedding) and type(module).forward is nn.Embedding.forward:
        if module.max_norm is not None or module.scale_grad_by_freq or module.sparse:
            raise UnsupportedLayerError(
                f"embedding '{name}' uses max_norm, scale_grad_by_freq or sparse=True: the "
                "first rewrites weights during forward and the second mixes examples' "
                "gradients; build it with the defaults (dense gradients, no renormalisation)"
            )
        return _EmbeddingTap(name, module)
    trainable = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
    raise UnsupportedLayerError(
        f"layer '{name or '<root>'}' ({type(module).__name__}) has trainable tensors "
        f"{trainable}; fedctr-sparse computes per-example gradients only for nn.Linear and "
        "nn.Embedding. Move the tensor into one of those layers, freeze it with "
        "requires_grad_(False), or train with the 'opacus-ghost' implementation"
    )


class LayerTaps:
    """Hooks on every trainable layer of a model, and the records of one batch."""

    def __init__(self, module: nn.Module) -> None:
        if isinstance(module, AbstractGradSampleModule):
            raise UnsupportedLayerError(
                "the model is already wrapped by Opacus; pass the plain nn.Module"
            )
        _reject_batch_mixing(module)
        self.taps: list[_LayerTap] = []
        owner: dict[int, str] = {}
        for name, sub in module.named_modules():
            if not any(p.requires_grad for p in sub.parameters(recurse=False)):
                continue
            tap = _tap_for(name, sub)
            for p in tap.trainable():
                if id(p) in owner:
                    raise UnsupportedLayerError(
                        f"layers '{owner[id(p)]}' and '{name}' share a trainable tensor; "
                        "tied weights are not supported by fedctr-sparse"
                    )
                owner[id(p)] = name
            self.taps.append(tap)
        self._anchor = torch.zeros((), requires_grad=True)
        self._recording = False
        self._handles: list[RemovableHandle] = []
        for tap in self.taps:
            _drop_stale_hooks(tap.module)
            self._handles.append(tap.module.register_forward_hook(_TapHook(self, tap)))

    # ---- recording -----------------------------------------------------
    def embedding_weights(self) -> list[nn.Parameter]:
        """The trainable embedding tables (what bucket selection restricts)."""
        return [
            t.module.weight
            for t in self.taps
            if isinstance(t, _EmbeddingTap) and t.module.weight.requires_grad
        ]

    def parameters(self) -> list[nn.Parameter]:
        """Every trainable tensor of the model, layer by layer."""
        return [p for tap in self.taps for p in tap.trainable()]

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record one training forward pass with the parameters kept out of the graph."""
        if any(call.grad is not None for tap in self.taps for call in tap.calls):
            raise TrainingLoopError(
                "a new forward pass started after backward() but before optimizer.step(); "
                "gradient accumulation over several batches is not supported: call "
                "optimizer.step() (or zero_grad()) after each backward pass"
            )
        self.clear()
        params = [p for p in self.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        self._recording = True
        try:
            yield
        finally:
            self._recording = False
            for p in params:
                p.requires_grad_(True)

    def clear(self) -> None:
        for tap in self.taps:
            tap.calls.clear()

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.clear()

    def record(self, tap: _LayerTap, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        """Forward hook body: keep the layer input, watch the gradient of its output."""
        if not self._recording or not torch.is_grad_enabled():
            return None
        x = inputs[0]
        call = _Call(inputs=x.detach(), version=x._version)
        tap.calls.append(call)
        replaced = None
        if not output.requires_grad:
            output = replaced = _Leaf.apply(output, self._anchor)
        output.register_hook(call.capture)
        return replaced

    # ---- the batch -----------------------------------------------------
    def batch(self) -> RecordedBatch:
        """The validated records of the last forward/backward pass."""
        calls = {tap: tap.used_calls() for tap in self.taps}
        recorded = [c for tap in self.taps for c in tap.calls]
        if not recorded:
            raise TrainingLoopError(
                "optimizer.step() was called without a forward pass through the private module"
            )
        sizes = {c.inputs.shape[0] if c.inputs.dim() else -1 for c in recorded}
        if len(sizes) != 1 or -1 in sizes:
            raise TrainingLoopError(
                f"layers saw different batch sizes {sorted(sizes)} in one pass; inputs must "
                "be batch-first with one row per example"
            )
        batch_size = sizes.pop()
        if batch_size > 0 and not any(calls.values()):
            raise TrainingLoopError(
                "optimizer.step() was called without loss.backward() on this batch"
            )
        return RecordedBatch(calls=calls, batch_size=batch_size)


@dataclass(frozen=True)
class RecordedBatch:
    """One batch's records: per-example norms and clipped sums come from here."""

    calls: dict[_LayerTap, list[_Call]]
    batch_size: int

    def per_sample_norms(self, groups: UserGroups | None = None) -> torch.Tensor:
        """L2 norm of each example's gradient over all parameters jointly (flat clipping);
        with ``groups``, of each user's gradient (the sum over its rows), ``[U]``.

        Backprops of a mean-reduced loss carry a factor ``1/N``; as Opacus does, the
        per-example gradient is the backprop times ``N``.
        """
        n = self.batch_size
        units = n if groups is None else groups.users
        total: torch.Tensor | None = None
        for tap, calls in self.calls.items():
            if calls and n > 0:
                part = tap.norm_sq(calls, n, groups)
                total = part if total is None else total + part
        if total is None:
            return torch.zeros(units)
        return total.sqrt() * n

    def clipped_sum_(
        self,
        grads: dict[nn.Parameter, torch.Tensor],
        coeff: torch.Tensor,
        row_masks: dict[nn.Parameter, torch.Tensor] | None = None,
        kept: torch.Tensor | None = None,
    ) -> None:
        """Add ``sum_i coeff_i * grad_i`` into ``grads`` (per-example gradients as above);
        an embedding table with an entry in ``row_masks`` only into its selected rows;
        with ``kept``, the other examples' records are not read (their coefficient is 0
        and their records may hold inf or NaN)."""
        scaled = coeff * self.batch_size
        masks = row_masks or {}
        for tap, calls in self.calls.items():
            if calls and self.batch_size > 0:
                mask = masks.get(tap.module.weight) if isinstance(tap, _EmbeddingTap) else None
                tap.clipped_sum_(calls, grads, scaled, self.batch_size, mask, kept)

    def touched(
        self, groups: UserGroups | None = None
    ) -> list[tuple[nn.Parameter, Touched, int | None]]:
        """Per trainable embedding table: the distinct rows each unit (example, or user
        with ``groups``) looked up in this batch, and the table's padding row."""
        out = []
        for tap, calls in self.calls.items():
            if not isinstance(tap, _EmbeddingTap) or not tap.module.weight.requires_grad:
                continue
            if not calls or self.batch_size == 0:
                empty = torch.zeros(0, dtype=torch.long)
                out.append((tap.module.weight, Touched(empty, empty), tap.module.padding_idx))
                continue
            touched = touched_rows(tap.indices(calls, self.batch_size), tap.module.padding_idx)
            if groups is not None:  # a user's rows may hit one table row more than once
                rows = tap.module.num_embeddings
                key = torch.unique(groups.user[touched.unit] * rows + touched.row)
                touched = Touched(key // rows, key % rows)
            out.append((tap.module.weight, touched, tap.module.padding_idx))
        return out


class _TapHook:
    """The forward hook of one layer (a class, so a later LayerTaps can find and drop it)."""

    def __init__(self, taps: LayerTaps, tap: _LayerTap) -> None:
        self.taps = taps
        self.tap = tap

    def __call__(
        self, module: nn.Module, inputs: tuple, output: torch.Tensor
    ) -> torch.Tensor | None:
        return self.taps.record(self.tap, inputs, output)


def _drop_stale_hooks(module: nn.Module) -> None:
    """A model made private again (next round, same object) keeps one set of hooks."""
    for key, hook in list(module._forward_hooks.items()):
        if isinstance(hook, _TapHook):
            del module._forward_hooks[key]


def _reject_batch_mixing(module: nn.Module) -> None:
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            raise UnsupportedLayerError(
                f"layer '{name}' ({type(sub).__name__}) normalises over the batch, so one "
                "example's gradient depends on the others and per-example clipping does not "
                "bound its influence; use LayerNorm or GroupNorm"
            )


__all__ = ["LayerTaps", "RecordedBatch"]
