"""An update as one integer vector: flatten, quantize, mask, and back.

Only floating-point tensors travel (a CTR model's state is all float); any other
tensor must be left unchanged by training, and the platform keeps its own copy.
Quantization is unbiased stochastic rounding drawn from :class:`SecureRandom`, so the
unmasked sum equals the weighted sum of the updates up to an error of one grid step
per partner and coordinate, with mean zero.

Masks are ChaCha20 keystreams (``cryptography``) read as uint64 words under a key
derived from a secret, so they are exactly uniform on ``Z_(2^64)`` and a masked input
on its own is uniform too, whatever the update. Flower's ``pseudo_rand_gen`` is not
used: it folds the seed into 32 bits for a Mersenne Twister, which a platform could
search exhaustively to strip a self mask.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fedctr.privacy.randomness import KEY_BYTES, SecureRandom
from fedctr.privacy.secagg.errors import SecAggError
from fedctr.privacy.secagg.settings import SecAggSettings


@dataclass(frozen=True)
class Layout:
    """Names and shapes of the float tensors of a state dict, in its order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, state: Mapping[str, torch.Tensor] | Mapping[str, np.ndarray]) -> Layout:
        names, shapes = [], []
        for name, value in state.items():
            if _is_float(value):
                names.append(name)
                shapes.append(tuple(value.shape))
        return cls(tuple(names), tuple(shapes))

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def flatten(self, state: Mapping[str, torch.Tensor] | Mapping[str, np.ndarray]) -> np.ndarray:
        """The float tensors as one float64 vector."""
        parts = [np.asarray(_numpy(state[n]), dtype=np.float64).ravel() for n in self.names]
        return np.concatenate(parts) if parts else np.zeros(0)

    def unflatten(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        if vector.size != self.size:
            raise SecAggError(f"vector has {vector.size} values, the model {self.size}")
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            count = int(np.prod(shape))
            out[name] = vector[start : start + count].reshape(shape)
            start += count
        return out


def _is_float(value: torch.Tensor | np.ndarray) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def update_vector(
    base: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor]
) -> tuple[Layout, np.ndarray]:
    """``new - base`` over the float tensors; other tensors must not have changed."""
    layout = Layout.of(base)
    for name, value in base.items():
        if name not in layout.names and not torch.equal(value, new[name]):
            raise SecAggError(
                f"tensor '{name}' is not floating point and changed in training; secure "
                "aggregation sums float tensors only"
            )
    return layout, layout.flatten(new) - layout.flatten(base)


def quantize(
    values: np.ndarray, settings: SecAggSettings, *, weight: int, rng: SecureRandom
) -> np.ndarray:
    """``weight * round(clip(values) * scale)`` as int64, with unbiased random rounding."""
    scaled = np.clip(values, -settings.clipping_range, settings.clipping_range) * settings.scale
    floor = np.floor(scaled)
    words = np.frombuffer(rng.keystream(4 * values.size), dtype=np.uint32)
    up = words.astype(np.float64) / 2.0**32 < (scaled - floor)
    return (floor.astype(np.int64) + up) * np.int64(weight)


def dequantize(total: np.ndarray, settings: SecAggSettings) -> np.ndarray:
    """The float sum behind an unmasked integer sum (int64 in two's complement)."""
    return total.astype(np.float64) / settings.scale


def mask(seed: bytes, size: int) -> np.ndarray:
    """``size`` uniform words of ``Z_(2^64)`` from a 32-byte secret seed."""
    if len(seed) != KEY_BYTES:
        raise SecAggError(f"a mask seed is {KEY_BYTES} bytes")
    return np.frombuffer(SecureRandom.from_key(seed).keystream(8 * size), dtype=np.uint64).copy()


def derive_seed(label: bytes, session: str, secret: bytes) -> bytes:
    """A mask seed bound to one session and one purpose (self or pairwise)."""
    return hashlib.sha256(
        b"fedctr/secagg/" + label + b"\0" + session.encode() + b"\0" + secret
    ).digest()


def as_words(values: np.ndarray) -> np.ndarray:
    """Two's-complement int64 as uint64 words (same bits)."""
    return np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)


def as_signed(words: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(words, dtype=np.uint64).view(np.int64)


__all__ = [
    "Layout",
    "as_signed",
    "as_words",
    "dequantize",
    "derive_seed",
    "mask",
    "quantize",
    "update_vector",
]
