"""A partner's DP update turned into its masked input, before anything is ledgered.

The node calls the sealer between training and writing its release entry, so the
entry's update hash commits to exactly what leaves the node (the masked input) and
never to the unmasked update, which the platform must not be able to test guesses
against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedctr.privacy import wire as P
from fedctr.privacy.distributed.noise import skellam_noise
from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.secagg.errors import SecAggRefused
from fedctr.privacy.secagg.partner import PartnerSession
from fedctr.privacy.secagg.settings import PROTOCOL
from fedctr.privacy.secagg.vectors import as_signed, as_words, quantize, update_vector


def integer_weight(weight: float, max_weight: int) -> int:
    """A declared aggregation weight as the integer multiplier secure aggregation needs."""
    if weight != int(weight) or not 1 <= weight <= max_weight:
        raise SecAggRefused(
            f"under secure aggregation the aggregation weight must be a whole number from 1 to "
            f"{max_weight} (the platform's max_weight), got {weight}"
        )
    return int(weight)


@dataclass
class Sealer:
    """Masks one update for one session (a session masks at most one input)."""

    session: PartnerSession
    weight: int
    rng: SecureRandom | None = None
    # Distributed DP: the Skellam share added to every quantized coordinate (0: none).
    noise_mu_share: float = 0.0

    protocol = PROTOCOL

    @property
    def session_id(self) -> str:
        return self.session.session

    def __call__(
        self, base: dict[str, torch.Tensor], new: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        _, delta = update_vector(base, new)
        rng = self.rng or SecureRandom.fresh()
        values = quantize(delta, self.session.settings, weight=self.weight, rng=rng)
        if self.noise_mu_share > 0:
            values += skellam_noise(values.size, mu=self.noise_mu_share, rng=rng)
        masked = self.session.seal(as_words(values))
        return {P.MASKED: torch.from_numpy(as_signed(masked).copy())}


__all__ = ["Sealer", "integer_weight"]
