"""Numpy forward passes of the CTR models, for millisecond serving.

A torch call costs ~100 us of dispatch for one row, more than the arithmetic; the
same forward pass in numpy over the model's own weights costs ~20 us. Each kernel
is built from a loaded torch model (never from raw files) and must match its
``forward`` within 1e-5 (tested for every registered model). A model without a
kernel is served by :class:`TorchKernel`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fedctr.models.base import CTRModel
from fedctr.plugins import Registry

Array = np.ndarray


def _np(t: torch.Tensor) -> Array:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


class _Linear:
    __slots__ = ("b", "w")

    def __init__(self, layer: nn.Linear) -> None:
        self.w = np.ascontiguousarray(_np(layer.weight).T)
        self.b = (
            _np(layer.bias) if layer.bias is not None else np.zeros(self.w.shape[1], np.float32)
        )

    def __call__(self, x: Array) -> Array:
        out = np.dot(x, self.w)
        out += self.b
        return out


class _MLP:
    """An ``nn.Sequential`` of Linear/ReLU pairs (``fedctr.models.layers.mlp``)."""

    def __init__(self, seq: nn.Sequential) -> None:
        self.layers = [_Linear(m) for m in seq if isinstance(m, nn.Linear)]

    def __call__(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer(x)
            np.maximum(x, 0.0, out=x)
        return x


class _Gather:
    """Field embeddings with shared offsets fused into one table: one ``take`` per call.

    Row layout: ``[first-order weight, |v|^2, v_1..v_k]`` when FM factors are given
    (``|v|^2`` precomputed, so the FM term needs no per-request squares), else just the
    module's own vectors.
    """

    def __init__(self, first: nn.Module | None, factors: nn.Module | None) -> None:
        cols = []
        if first is not None:
            cols.append(_np(first.embedding.weight))
        if factors is not None:
            v = _np(factors.embedding.weight)
            if first is not None:
                cols.append((v * v).sum(axis=1, keepdims=True))
            cols.append(v)
        module = first if first is not None else factors
        self.table = np.ascontiguousarray(np.concatenate(cols, axis=1))
        self.offsets = module.offsets.detach().cpu().numpy().astype(np.int64)
        self.ones = np.ones(len(self.offsets), dtype=np.float32)
        self.width = self.table.shape[1]

    def __call__(self, x_cat: Array) -> Array:
        """``[N, F]`` bucket ids to ``[N, F, width]``."""
        n, f = x_cat.shape
        return self.table.take((x_cat + self.offsets).ravel(), axis=0).reshape(n, f, self.width)

    def one(self, cats: list[int]) -> Array:
        """``[F, width]`` rows of one impression."""
        return self.table.take(np.add(cats, self.offsets), axis=0)

    def field_sum(self, g: Array) -> Array:
        """Sum over fields of a gathered ``[N, F, W]``: ``[N, W]`` in one matmul."""
        return np.matmul(self.ones, g)


def _numeric_or_zero(x_num: Array) -> Array:
    if x_num.shape[1] == 0:
        return np.zeros((x_num.shape[0], 1), np.float32)
    return x_num


class Kernel(ABC):
    """Logits ``[N]`` (float32) from encoded inputs; :meth:`one` for a single row."""

    @abstractmethod
    def __call__(self, x_cat: Array, x_num: Array, x_dense: Array) -> Array: ...

    def one(self, cats: list[int], nums: list[float], dense: list[float]) -> float:
        """Logit of one row given as lists (kernels override this with a 1-D path)."""
        return float(
            self(
                np.array([cats], dtype=np.int64).reshape(1, len(cats)),
                np.array([nums], dtype=np.float32).reshape(1, len(nums)),
                np.array([dense], dtype=np.float32).reshape(1, len(dense)),
            )[0]
        )


class TorchKernel(Kernel):
    """The model's own forward pass (used for models without a numpy kernel, and as
    the naive baseline in the benchmark)."""

    def __init__(self, model: CTRModel) -> None:
        self.model = model.eval()

    def __call__(self, x_cat: Array, x_num: Array, x_dense: Array) -> Array:
        with torch.inference_mode():
            out = self.model(
                torch.from_numpy(x_cat), torch.from_numpy(x_num), torch.from_numpy(x_dense)
            )
        return out.numpy()


# Keyed by model name; a model without an entry is served by TorchKernel.
KERNELS: Registry[Callable[[CTRModel], Kernel]] = Registry("numpy kernel")


def register_kernel(name: str) -> Callable[[type[Kernel]], type[Kernel]]:
    """Class decorator: the numpy kernel of model ``name``; a name is registered once."""

    def wrap(cls: type[Kernel]) -> type[Kernel]:
        KERNELS.add(name, cls)
        return cls

    return wrap


def kernel_names() -> tuple[str, ...]:
    return KERNELS.names()


def build_kernel(model: CTRModel, *, prefer: str = "numpy") -> Kernel:
    """The fastest available kernel for ``model`` (``prefer="torch"`` forces torch)."""
    if prefer == "numpy" and model.config.name in KERNELS:
        return KERNELS.get(model.config.name)(model)
    return TorchKernel(model)


class _FirstOrder(Kernel):
    """LR / FM / DeepFM / fusion share first-order weights (+ factors) and a linear part."""

    def __init__(self, model: CTRModel, *, factors: bool) -> None:
        self.has_cat = bool(model.has_cat)
        self.gather = _Gather(model.first_order, model.factors if factors else None)
        self.linear = _Linear(model.linear)

    def cat_part(self, x_cat: Array) -> tuple[Array, Array]:
        """First-order sum ``[N]`` + FM term, and the factor vectors ``[N, F, k]``."""
        g = self.gather(x_cat)
        c = self.gather.field_sum(g)
        if g.shape[2] == 1:
            return c[:, 0], g[:, :, 1:]
        s = c[:, 2:]
        # FM: 0.5 * (|sum_f v_f|^2 - sum_f |v_f|^2), the second term precomputed per bucket
        return c[:, 0] + 0.5 * (np.einsum("nk,nk->n", s, s) - c[:, 1]), g[:, :, 2:]

    def cat_one(self, cats: list[int]) -> tuple[float, Array]:
        """:meth:`cat_part` of one row: a scalar and the ``[F * k]`` flattened factors."""
        g = self.gather.one(cats)
        c = self.gather.ones.dot(g)
        if g.shape[1] == 1:
            return c[0], g[:, 1:].ravel()
        s = c[2:]
        return c[0] + 0.5 * (s.dot(s) - c[1]), g[:, 2:].ravel()


def _dense_one(nums: list[float], dense: list[float]) -> Array:
    """``[numeric_or_zero, dense]`` of one row as float32."""
    return np.array((nums or [0.0]) + dense, dtype=np.float32)


@register_kernel("lr")
class LRKernel(_FirstOrder):
    """Logistic regression; :class:`FMKernel` is the same with the factors in the table."""

    factors = False

    def __init__(self, model: CTRModel) -> None:
        super().__init__(model, factors=self.factors)

    def __call__(self, x_cat: Array, x_num: Array, x_dense: Array) -> Array:
        out = self.linear(np.concatenate([_numeric_or_zero(x_num), x_dense], axis=1))[:, 0]
        return out + self.cat_part(x_cat)[0] if self.has_cat else out

    def one(self, cats: list[int], nums: list[float], dense: list[float]) -> float:
        out = self.linear(_dense_one(nums, dense))[0]
        return float(out + self.cat_one(cats)[0] if self.has_cat else out)


@register_kernel("fm")
class FMKernel(LRKernel):
    factors = True


@register_kernel("deepfm")
class DeepFMKernel(_FirstOrder):
    def __init__(self, model: CTRModel) -> None:
        super().__init__(model, factors=True)
        self.deep = _MLP(model.deep)
        self.deep_out = _Linear(model.deep_out)

    def __call__(self, x_cat: Array, x_num: Array, x_dense: Array) -> Array:
        n = x_cat.shape[0]
        dense = np.concatenate([_numeric_or_zero(x_num), x_dense], axis=1)
        out = self.linear(dense)[:, 0]
        if self.has_cat:
            cat, v = self.cat_part(x_cat)
            out += cat
            dense = np.concatenate([v.reshape(n, -1), dense], axis=1)
        return out + self.deep_out(self.deep(dense))[:, 0]

    def one(self, cats: list[int], nums: list[float], dense: list[float]) -> float:
        x = _dense_one(nums, dense)
        out = self.linear(x)[0]
        if self.has_cat:
            cat, v = self.cat_one(cats)
            out += cat
            x = np.concatenate((v, x))
        return float(out + self.deep_out(self.deep(x))[0])


@register_kernel("dcnv2")
class DCNv2Kernel(Kernel):
    def __init__(self, model: CTRModel) -> None:
        self.has_cat = bool(model.has_cat)
        self.gather = _Gather(None, model.embed)
        self.cross = [(_Linear(c.down), _Linear(c.up)) for c in model.cross]
        self.deep = _MLP(model.deep)
        self.head = _Linear(model.head)

    def __call__(self, x_cat: Array, x_num: Array, x_dense: Array) -> Array:
        n = x_cat.shape[0]
        parts = [_numeric_or_zero(x_num), x_dense]
        if self.has_cat:
            parts.insert(0, self.gather(x_cat).reshape(n, -1))
        x0 = np.concatenate(parts, axis=1)
        xl = x0
        for down, up in self.cross:
            xl = x0 * up(down(xl)) + xl
        return self.head(np.concatenate([xl, self.deep(x0)], axis=1))[:, 0]

    def one(self, cats: list[int], nums: list[float], dense: list[float]) -> float:
        x0 = _dense_one(nums, dense)
        if self.has_cat:
            x0 = np.concatenate((self.gather.one(cats).ravel(), x0))
        xl = x0
        for down, up in self.cross:
            xl = x0 * up(down(xl)) + xl
        return float(self.head(np.concatenate((xl, self.deep(x0))))[0])


@register_kernel("fusion")
class FusionKernel(_FirstOrder):
    def __init__(self, model: CTRModel) -> None:
        super().__init__(model, factors=True)
        self.projections = [
            (getattr(model, f"idx_{m}").cpu().numpy(), _Linear(model.projections[m]))
            for m in model.modalities
        ]
        self.fuse = _Linear(model.fuse)
        self.deep = _MLP(model.deep)
        self.head = _Linear(model.head)

    def __call__(self, x_cat: Array, x_num: Array, x_dense: Array) -> Array:
        n = x_cat.shape[0]
        num = _numeric_or_zero(x_num)
        out = self.linear(num)[:, 0]
        projected = np.concatenate([p(x_dense.take(i, axis=1)) for i, p in self.projections], 1)
        np.maximum(projected, 0.0, out=projected)
        fused = self.fuse(projected)
        np.maximum(fused, 0.0, out=fused)
        parts = [num, fused]
        if self.has_cat:
            cat, v = self.cat_part(x_cat)
            out += cat
            parts.insert(0, v.reshape(n, -1))
        return out + self.head(self.deep(np.concatenate(parts, axis=1)))[:, 0]

    def one(self, cats: list[int], nums: list[float], dense: list[float]) -> float:
        num = np.array(nums or [0.0], dtype=np.float32)
        x = np.array(dense, dtype=np.float32)
        out = self.linear(num)[0]
        projected = np.concatenate([p(x.take(i)) for i, p in self.projections])
        np.maximum(projected, 0.0, out=projected)
        fused = self.fuse(projected)
        np.maximum(fused, 0.0, out=fused)
        parts = [num, fused]
        if self.has_cat:
            cat, v = self.cat_one(cats)
            out += cat
            parts.insert(0, v)
        return float(out + self.head(self.deep(np.concatenate(parts)))[0])


__all__ = ["KERNELS", "Kernel", "TorchKernel", "build_kernel", "kernel_names", "register_kernel"]
