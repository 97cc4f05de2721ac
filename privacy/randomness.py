"""The randomness DP-SGD spends: Poisson sampling and Gaussian noise from a CSPRNG.

torch's default generator (MT19937, a 63-bit seed) is not cryptographically secure:
its state can be recovered from its outputs, and with it the noise. Opacus' own
secure mode needs torchcsprng, which cannot be installed here. :class:`SecureRandom`
is a ChaCha20 keystream (``cryptography``, i.e. OpenSSL) keyed with 32 bytes from
:mod:`secrets`; every uniform, Bernoulli draw and Gaussian below is computed from it.

Floating-point attacks (Mironov 2012; Holohan & Braghin 2021) exploit that a
sampler computed at the precision of the release leaves holes in the support of the
noise, so ``x + noise`` can betray ``x``. The mitigation here is precision: the
radius of the Box-Muller transform, the only step whose rounding creates such holes
(``sqrt(-2 ln u)`` on a grid of ``u``), is computed in float64 from 52-bit
uniforms, and the noise is released in float32 (the gradients' dtype): the
sampler's grid is 2^28 times finer than the release's. The float32 noise then
reaches every float32 value within about 8.5 sigma (52-bit uniforms reach
``sqrt(2 * 52 ln 2)``; beyond that the Gaussian mass is below 1e-16), so no hole is
left at the precision an observer sees. A mitigation argued from precision, not a
proof (no published analysis covers Box-Muller at mixed precision). This costs
about 1.3x torch's own ``normal_`` (see ``bench/bench_dpsgd.py``), where Opacus'
secure-mode construction (four Gaussians summed) costs 4x.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from privacy.errors import InvalidPrivacyParameter

KEY_BYTES = 32
_CHUNK = 1 << 20  # values per keystream request: bounds the temporary buffers (~12 MB)


class SecureRandom:
    """A ChaCha20 keystream and the draws DP-SGD needs from it.

    Create one per round with :meth:`fresh`; :meth:`from_key` exists for tests and
    reproducible benchmarks (a known key makes the noise known: never in production).
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise InvalidPrivacyParameter(f"a SecureRandom key is {KEY_BYTES} bytes")
        # 16-byte nonce = 4-byte block counter + 12-byte nonce (RFC 7539 layout): a
        # fresh key per instance, so a zero nonce never repeats under one key.
        self._stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
        self._zeros = bytes(12 * _CHUNK)  # encrypting zeros yields the keystream
        self._buffer = bytearray(12 * _CHUNK)

    @classmethod
    def fresh(cls) -> SecureRandom:
        """A generator keyed from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_key(cls, key: bytes) -> SecureRandom:
        """A reproducible generator (tests, seeded benchmarks)."""
        return cls(key)

    # ---- raw draws -----------------------------------------------------------
    def _bytes(self, count: int) -> memoryview:
        """``count`` fresh keystream bytes, in a buffer reused by the next call."""
        if count > len(self._buffer):
            self._zeros, self._buffer = bytes(count), bytearray(count)
        view = memoryview(self._buffer)[:count]
        self._stream.update_into(memoryview(self._zeros)[:count], view)
        return view

    def _words(self, count: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
        width = np.dtype(dtype).itemsize
        return np.frombuffer(self._bytes(count * width), dtype=f"<u{width}").copy()

    @staticmethod
    def _unit_interval(words: np.ndarray) -> np.ndarray:
        """uint64 words -> float64 uniforms in (0, 1], in place: 52 random bits each.

        The top 52 bits become the mantissa of a double in [1, 2); ``2 - x`` is then a
        uniform on (0, 1] with no rounding (never 0, so its log is finite).
        """
        words >>= np.uint64(12)
        words |= np.uint64(0x3FF0000000000000)
        values = words.view(np.float64)
        np.subtract(2.0, values, out=values)
        return values

    def uniform(self, count: int) -> np.ndarray:
        """``count`` float64 uniforms in (0, 1] with 52 random bits each."""
        return self._unit_interval(self._words(count, np.uint64))

    # ---- Poisson sampling -------------------------------------------------------
    def poisson_mask(self, count: int, *, rate: float) -> torch.Tensor:
        """Bool [count], each True independently with probability ``p <= rate``.

        A 64-bit uniform integer is compared with ``floor(rate * 2**64)``, so the
        effective rate is ``floor(rate * 2**64) / 2**64``: at most ``rate`` (the
        accountant's ``q`` is never below the sampler's) and less than ``2**-64`` below.
        """
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise InvalidPrivacyParameter(f"sampling rate must be in (0, 1], got {rate!r}")
        if rate == 1:
            return torch.ones(count, dtype=torch.bool)
        threshold = np.uint64(math.floor(Fraction(rate) * 2**64))
        return torch.from_numpy(self._words(count, np.uint64) < threshold)

    # ---- Gaussian noise -----------------------------------------------------------
    def gaussian_(self, out: torch.Tensor, *, std: float) -> torch.Tensor:
        """Fill the float32 CPU tensor ``out`` with N(0, std^2) in place; return it."""
        if isinstance(std, bool) or not isinstance(std, int | float) or not std >= 0:
            raise InvalidPrivacyParameter(f"noise std must be >= 0, got {std!r}")
        if out.dtype != torch.float32 or out.device.type != "cpu" or not out.is_contiguous():
            raise TypeError("gaussian_ fills contiguous float32 CPU tensors")
        flat = out.view(-1).numpy()
        if std == 0:
            flat[:] = 0.0
            return out
        for start in range(0, flat.size, 2 * _CHUNK):
            self._box_muller(flat[start : start + 2 * _CHUNK], float(std))
        return out

    def _box_muller(self, out: np.ndarray, std: float) -> None:
        """Two Gaussians per (radius, angle) pair; radius in float64 (see module doc).

        The arithmetic runs in torch (intra-op threads); numpy only views the buffers.
        """
        pairs = (out.size + 1) // 2
        raw = self._bytes(12 * pairs)
        radius = torch.from_numpy(
            self._unit_interval(np.frombuffer(raw[: 8 * pairs], dtype="<u8").copy())
        )
        radius.log_().mul_(-2.0 * std * std).sqrt_()
        radius32 = radius.to(torch.float32)
        angle = torch.from_numpy(np.frombuffer(raw[8 * pairs :], dtype="<i4").copy())
        angle = angle.to(torch.float32).mul_(2 * math.pi / 2**32)  # a signed angle: fine
        target = torch.from_numpy(out)
        torch.mul(torch.cos(angle), radius32, out=target[:pairs])
        rest = out.size - pairs
        if rest:
            torch.mul(torch.sin(angle[:rest]), radius32[:rest], out=target[pairs:])


__all__ = ["KEY_BYTES", "SecureRandom"]
