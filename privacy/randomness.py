"""The randomness DP-SGD spends: Poisson sampling and Gaussian noise from a CSPRNG.

Why not torch's generator: it is a Mersenne Twister with a 64-bit seed; its state
can be recovered from enough outputs, and with it every past and future noise
value, which turns the Gaussian mechanism into no mechanism at all. Opacus' own
secure mode needs torchcsprng, which cannot be installed here. :class:`SecureRandom`
is a ChaCha20 keystream (``cryptography``, i.e. OpenSSL) under a 32-byte key from
:mod:`secrets`; every Bernoulli draw and every Gaussian below is computed from it.

Poisson sampling: one 64-bit keystream word per row, included iff the word is below
``floor(rate * 2**64)``; the effective rate is never above the declared one, which
is what the accountant is told (it can be below by less than ``2**-64``).

Gaussian noise, and the floating-point attack. Mironov (CCS 2012) showed that a
noise sampler evaluated in floating point reaches only a sparse, structured set of
values, so ``x + noise`` can betray ``x``; Holohan & Braghin (ESORICS 2021,
arXiv 2107.10138) built the same attack against Box-Muller Gaussians, and Opacus'
secure mode answers it by summing four Gaussians (``_generate_noise``): the sum
reaches a dense set and inverting it costs ``2**(3*53)`` work.

What is implemented: one Box-Muller pair ``(r cos t, r sin t)`` per two outputs.
The radius ``r = std * sqrt(-2 ln u)`` is computed in float64 from a 52-bit uniform
``u`` in (0, 1]; the angle ``t`` is a 32-bit keystream word scaled to [-pi, pi) in
float32, with float32 cos/sin; each product ``r * cos t`` is formed in float64 and
rounded once to float32, the dtype of every gradient, weight and update this code
releases. Only float32 outputs are accepted. Keystream: 12 bytes per pair.

Why it is sound at float32, although a single Box-Muller in float64 is what the
attack breaks: the observer sees float32 values, whose cells are ``2**-24 |z|``
wide, never the sampler's float64 intermediates. Support: the float32 cosines are
dense in [-1, 1] and the float64 radii dense in [0, 8.49 std], so the rounded
products reach every float32 value in ``[-8.49 std, 8.49 std]`` (8.49 = ``sqrt(2 *
52 ln 2)``, the largest radius a 52-bit uniform gives): no candidate ``x`` can be
excluded from the support of ``x + noise`` by a missing value. Mass: for a fixed
angle the output falls in a cell iff ``r`` falls in an interval of relative width
``~2**-24``; consecutive float64 radii are ``2**-52 / (u r**2)`` apart relatively,
about ``2**27`` per cell at 1 std and still several per cell up to ~6.9 std, so
there each cell gets the Gaussian mass of its radius intervals; the angle's float32
rounding only moves those intervals by a relative ``~1e-7``, changing a cell's mass
by a relative ``~1e-7 r**2``. Beyond ~6.9 std the radii thin out and cell masses
turn lumpy (that region's mass is below ``1e-11`` per coordinate); beyond 8.49 std
the noise is truncated (below ``2e-17``).

Why not Opacus' sum of four: cost. One step's noise for the 9.45M parameters of the
DeepFM in ``bench/bench_dpsgd.py``, on this 2-core machine (idle): torch ``normal_``
(insecure, what fedctr used before) ~32 ms, this construction ~21 ms (numpy, two
threads; ~40 ms on one), an all-float64 Box-Muller ~55 ms, the sum of four
all-float64 Box-Mullers ~250 ms (a prototype). At ~100 steps per epoch the sum of
four would add ~25 s to a 3-6 s non-private epoch, far over the 2x budget; this adds
~2 s (the bench's last line measures it again).

Limits, stated plainly: (1) this is an argument, not a published proof (Opacus' sum
of four is argued too); (2) float64 outputs would need the sum of four, hence
float32 only; (3) like Opacus' secure mode, this does not make the float32
*addition* ``x + noise`` exact, which only a snapping mechanism (Mironov 2012) does.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

from fedctr.privacy.errors import InvalidPrivacyParameter, PrivacyError
from fedctr.privacy.poisson import PoissonSampler
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)

KEY_BYTES = 32
# Box-Muller pairs per chunk. Chunks are spread over plain threads running numpy
# operations, which release the GIL; torch's OpenMP pool is avoided on purpose: its
# barriers stall for a whole scheduler slice whenever another process holds a core
# (measured: 10-50x slower noise on a shared 2-core machine). 2^16 pairs keep a
# chunk's ~1.3 MiB of buffers in cache and the GIL hand-overs few (measured on 2
# cores: 2^14 pairs 32 ms, 2^16 20 ms, 2^17 30 ms per 9.45M values).
_PAIRS = 1 << 16
_CHUNK_VALUES = 2 * _PAIRS
_CHUNK_BYTES = 12 * _PAIRS  # 8 bytes of radius and 4 of angle per pair
_CHUNK_BLOCKS = _CHUNK_BYTES // 64  # ChaCha20 blocks per chunk
_CHUNKS_PER_KEY = 2**32 // _CHUNK_BLOCKS  # the 32-bit block counter never wraps
_MASK_WORDS = _CHUNK_BYTES // 8  # Poisson draws per keystream request
# The sequential stream re-keys itself after 64 GiB, far below the 256 GiB after
# which a 32-bit ChaCha20 block counter would wrap and repeat the keystream.
_REKEY_BYTES = 1 << 36
_ONE = np.uint64(0x3FF0000000000000)  # exponent bits of 1.0: mantissa trick below
_ANGLE_SCALE_32 = np.float32(2 * math.pi / 2**32)  # signed 32-bit word -> [-pi, pi)


class NoiseTargetError(PrivacyError, TypeError):
    """Noise was asked for in a tensor this sampler does not fill soundly (not float32 on
    CPU, or not contiguous)."""


class _Scratch:
    """One thread's buffers for one chunk: keystream and float32 angle/trig."""

    def __init__(self) -> None:
        self.zeros = bytes(_CHUNK_BYTES)  # encrypting zeros yields the keystream itself
        self.buffer = bytearray(_CHUNK_BYTES)
        self.angle = np.empty(_PAIRS, dtype=np.float32)
        self.trig = np.empty(_PAIRS, dtype=np.float32)


class SecureRandom:
    """A ChaCha20 keystream and the draws DP-SGD needs from it.

    Make one per round with :meth:`fresh`. :meth:`from_key` exists for tests and
    reproducible benchmarks: a known key makes the noise known, so never in production.
    Draws follow call order, so the same key and the same calls give the same draws;
    one instance must not be used from two threads at once.

    Poisson masks and :meth:`keystream` read one sequential stream. Each
    :meth:`gaussian_` call takes a fresh 32-byte key from that stream and gives chunk
    ``j`` of its output the keystream of that key at block ``j * _CHUNK_BLOCKS``
    (ChaCha20 is seekable), so chunks are computed in parallel and the result does not
    depend on the number of threads.
    """

    def __init__(self, *, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise InvalidPrivacyParameter(f"a SecureRandom key is exactly {KEY_BYTES} bytes")
        self._cipher = _chacha20(key)
        self._used = 0
        self._scratch: list[_Scratch] = [_Scratch()]

    @classmethod
    def fresh(cls) -> SecureRandom:
        """A generator keyed with 32 bytes from the operating system's CSPRNG."""
        return cls(key=secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_key(cls, key: bytes) -> SecureRandom:
        """A reproducible generator (tests, seeded benchmarks): same key, same draws."""
        return cls(key=key)

    # ---- the sequential stream -----------------------------------------------------
    def keystream(self, count: int) -> bytes:
        """The next ``count`` bytes of the sequential stream."""
        _CHECK.integer(count, "a draw count")
        parts = []
        for start in range(0, count, _CHUNK_BYTES):
            parts.append(bytes(self._fill(min(_CHUNK_BYTES, count - start))))
        return b"".join(parts)

    def _fill(self, size: int) -> memoryview:
        """The next ``size <= _CHUNK_BYTES`` bytes of the sequential stream, in a buffer
        the next draw overwrites (consume before drawing again)."""
        if self._used + size > _REKEY_BYTES:
            # Fast key erasure: the next key is the stream's next 32 bytes.
            self._cipher = _chacha20(self._cipher.update(bytes(KEY_BYTES)))
            self._used = 0
        self._used += size
        scratch = self._scratch[0]
        out = memoryview(scratch.buffer)[:size]
        self._cipher.update_into(memoryview(scratch.zeros)[:size], out)
        return out

    # ---- Poisson sampling ------------------------------------------------------------
    def poisson_mask(self, n: int, *, rate: float) -> torch.Tensor:
        """Bool ``[n]``: each entry True independently with probability
        ``floor(rate * 2**64) / 2**64``, i.e. at most ``rate`` and less than ``2**-64``
        below it (one 64-bit word of the sequential stream per entry)."""
        _CHECK.integer(n, "a draw count")
        _CHECK.rate(rate, "a sampling rate")
        if rate == 1:
            return torch.ones(n, dtype=torch.bool)
        threshold = np.uint64(math.floor(Fraction(rate) * 2**64))  # exact: no float rounding
        mask = np.empty(n, dtype=np.bool_)
        for start in range(0, n, _MASK_WORDS):
            stop = min(n, start + _MASK_WORDS)
            np.less(self._words(stop - start), threshold, out=mask[start:stop])
        return torch.from_numpy(mask)

    def _words(self, count: int) -> np.ndarray:
        """The next ``count <= _MASK_WORDS`` uint64 words (a view, as :meth:`_fill`)."""
        return np.frombuffer(self._fill(8 * count), dtype="<u8")

    def words(self, count: int) -> np.ndarray:
        """The next ``count`` uniform uint64 words of the sequential stream (a copy)."""
        _CHECK.integer(count, "a draw count")
        out = np.empty(count, dtype=np.uint64)
        for start in range(0, count, _MASK_WORDS):
            stop = min(count, start + _MASK_WORDS)
            out[start:stop] = self._words(stop - start)
        return out

    def poisson_indices(self, n: int, *, sampler: PoissonSampler) -> torch.Tensor:
        """The rows of ``0..n-1`` that one Poisson draw includes (sorted int64), each
        independently with probability ``sampler.probability``: the same law as
        :meth:`poisson_mask` at ``floor(rate * 2**64) / 2**64``, in ``O(n * rate)``
        words instead of ``n`` (:mod:`fedctr.privacy.poisson`)."""
        return torch.from_numpy(sampler.indices(n, self.words))

    # ---- Gaussian noise ----------------------------------------------------------------
    def gaussian_(self, out: torch.Tensor, *, std: float) -> torch.Tensor:
        """Fill ``out`` (contiguous float32, CPU) with N(0, std^2) in place and return it.

        See the module docstring for the construction and why float32 only. Chunks are
        spread over ``torch.get_num_threads()`` threads.
        """
        _CHECK.non_negative(std, "noise std")
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32:
            raise NoiseTargetError(
                "gaussian_ fills float32 tensors only: its floating-point-attack argument "
                "rests on a float64 radius released in float32"
            )
        if out.device.type != "cpu" or not out.is_contiguous():
            raise NoiseTargetError("gaussian_ fills contiguous CPU tensors")
        if std == 0:
            out.zero_()
            return out
        flat = out.detach().view(-1).numpy()
        chunks = -(-flat.size // _CHUNK_VALUES)
        keys = [self.keystream(KEY_BYTES) for _ in range(-(-chunks // _CHUNKS_PER_KEY))]
        workers = max(1, min(torch.get_num_threads(), chunks))  # as many as torch may use
        while len(self._scratch) < workers:
            self._scratch.append(_Scratch())

        def fill(worker: int) -> None:
            scratch = self._scratch[worker]
            for j in range(worker, chunks, workers):
                key, block = keys[j // _CHUNKS_PER_KEY], (j % _CHUNKS_PER_KEY) * _CHUNK_BLOCKS
                segment = flat[j * _CHUNK_VALUES : (j + 1) * _CHUNK_VALUES]
                _box_muller_(segment, float(std), _chacha20(key, block=block), scratch)

        _run_in_threads(fill, workers)
        return out


def _box_muller_(out: np.ndarray, std: float, stream: CipherContext, scratch: _Scratch) -> None:
    """Fill ``out`` (at most ``_CHUNK_VALUES`` float32) from ``ceil(len / 2)`` pairs drawn
    from ``stream``: cosines into the first half, sines into the second. numpy only: it
    releases the GIL for each operation, so chunks run in parallel threads."""
    size = out.size
    pairs = (size + 1) // 2
    raw = memoryview(scratch.buffer)[: 12 * pairs]
    stream.update_into(memoryview(scratch.zeros)[: 12 * pairs], raw)
    # Radius: 52 random mantissa bits under the exponent of 1.0 give a float64 uniform
    # on [1, 2) with no rounding (the top 12 bits of each word are dropped).
    words = np.frombuffer(raw, dtype="<u8", count=pairs)
    words >>= np.uint64(12)
    words |= _ONE
    radius = words.view(np.float64)
    np.subtract(2.0, radius, out=radius)  # (0, 1], exact: the log is finite
    np.log(radius, out=radius)
    scale = -2.0 * std * std
    folded = 0 < -scale < math.inf  # else std^2 under/overflows: scale after the root
    np.multiply(radius, scale if folded else -2.0, out=radius)
    np.sqrt(radius, out=radius)
    if not folded:
        np.multiply(radius, std, out=radius)
    # Angle: a signed 32-bit word times 2 pi / 2^32, in float32.
    words32 = np.frombuffer(raw, dtype="<i4", offset=8 * pairs)
    angle, trig = scratch.angle[:pairs], scratch.trig[:pairs]
    np.multiply(words32, _ANGLE_SCALE_32, out=angle, casting="unsafe")
    rest = size - pairs
    np.cos(angle, out=trig)
    np.multiply(trig, radius, out=out[:pairs], casting="same_kind")  # float64 product
    if rest:
        np.sin(angle[:rest], out=trig[:rest])
        np.multiply(trig[:rest], radius[:rest], out=out[pairs:], casting="same_kind")


def _run_in_threads(work: Callable[[int], None], workers: int) -> None:
    """``work(0)`` here and ``work(1..workers-1)`` in threads; re-raise the first error.

    Plain threads, not torch's pool: numpy, torch and OpenSSL release the GIL for the
    arithmetic, and a thread that loses its core only delays its own chunks.
    """
    errors: list[BaseException] = []

    def guarded(worker: int) -> None:
        try:
            work(worker)
        except BaseException as exc:  # re-raised in the caller below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,), daemon=True) for w in range(1, workers)]
    for thread in threads:
        thread.start()
    guarded(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _chacha20(key: bytes, *, block: int = 0) -> CipherContext:
    """The ChaCha20 keystream of ``key`` from block ``block`` on, nonce zero.

    ``cryptography``'s 16-byte nonce is the 4-byte little-endian block counter then the
    12-byte nonce (RFC 8439). Every key is fresh (from :mod:`secrets`, or drawn from a
    stream) and each block of a key is used once, so no keystream block repeats.
    """
    return Cipher(
        algorithms.ChaCha20(key, block.to_bytes(4, "little") + bytes(12)), mode=None
    ).encryptor()


__all__ = ["KEY_BYTES", "NoiseTargetError", "SecureRandom"]
