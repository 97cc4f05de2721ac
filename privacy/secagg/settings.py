"""What the platform chooses about secure aggregation, and what a partner accepts.

SecAgg+ (Bell et al., CCS 2020): each partner masks its quantized update with
pairwise masks agreed with its neighbours and a self mask, and Shamir-shares the
secrets of both among its neighbourhood, so the platform can remove the masks of the
survivors (and of partners that dropped after sharing) only for the *sum*, and only
with ``threshold`` share holders. With ``neighbours = 0`` every partner is every
other's neighbour (the original SecAgg of Bonawitz et al., CCS 2017).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fedctr.privacy.secagg.errors import SecAggRefused
from fedctr.validate import Checker

_CHECK = Checker(SecAggRefused)

#: Masked vectors live in Z_(2^64): numpy's uint64 arithmetic wraps there for free,
#: and a ChaCha20 keystream read as uint64 words is exactly uniform on it.
MODULUS_BITS = 64
PROTOCOL = "secagg+"


@dataclass(frozen=True, kw_only=True)
class SecAggSettings:
    """The round's parameters; sent to every partner, which checks them.

    ``threshold`` is the share of a neighbourhood (the partner and its neighbours)
    that must answer before a secret of one of its members is reconstructed. It is
    never below a strict majority: a platform that could collect one threshold of
    shares for a partner's self mask and another, disjoint one for its pairwise
    secret could unmask that partner alone. ``clipping_range`` bounds each update
    coordinate (a DP update is post-processed by the clamp, nothing more) and
    ``quantization_bits`` sets the integer grid of ``2 * clipping_range``.
    """

    threshold: float = 0.5
    neighbours: int = 0
    clipping_range: float = 8.0
    quantization_bits: int = 32
    max_weight: int = 1_000

    def __post_init__(self) -> None:
        if not 0 < _CHECK.number(self.threshold, "threshold") <= 1:
            _CHECK.fail(f"secure aggregation threshold must be in (0, 1], got {self.threshold}")
        _CHECK.integer(self.neighbours, "neighbours")
        if self.neighbours % 2:
            _CHECK.fail(
                f"secure aggregation neighbours must be even (a ring, half on each side) or 0 "
                f"(everyone), got {self.neighbours}"
            )
        _CHECK.positive(self.clipping_range, "clipping_range")
        _CHECK.integer(self.quantization_bits, "quantization_bits", minimum=8)
        _CHECK.integer(self.max_weight, "max_weight", minimum=1)
        if self.quantization_bits + math.ceil(math.log2(self.max_weight)) > 48:
            _CHECK.fail(
                "quantization_bits + log2(max_weight) must stay at most 48, so that the sum "
                "of up to 2^15 weighted inputs cannot wrap around 2^64"
            )

    def threshold_for(self, neighbourhood_size: int) -> int:
        """Shares needed to reconstruct a secret of a neighbourhood of that size."""
        return max(math.ceil(self.threshold * neighbourhood_size), neighbourhood_size // 2 + 1)

    @property
    def levels(self) -> int:
        """Integer steps across ``[-clipping_range, clipping_range]``."""
        return 1 << self.quantization_bits

    @property
    def scale(self) -> float:
        """Integer steps per unit of update value (what quantization multiplies by)."""
        return self.levels / (2 * self.clipping_range)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SecAggSettings:
        """Parse untrusted settings (a platform message): exact keys, typed values."""
        if not isinstance(data, dict) or set(data) != {f for f in cls.__dataclass_fields__}:
            raise SecAggRefused("secure aggregation settings carry unknown or missing keys")
        return cls(**data)


__all__ = ["MODULUS_BITS", "PROTOCOL", "SecAggSettings"]
