"""Poisson sampling at a declared rate, for a declared number of steps, from a CSPRNG.

Opacus' ``DPDataLoader`` samples at ``1 / len(loader)``, i.e. at a rate derived from
the number of rows, and draws from torch's default generator. Here the rate ``q``
and the step count come from the partner's config (so the accounted epsilon is
data-independent), and each step includes every row independently with
probability ``q`` drawn from :class:`privacy.randomness.SecureRandom`. A step may
be empty; it still counts as a step for the accountant, as in Opacus.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from privacy.errors import InvalidPrivacyParameter
from privacy.randomness import SecureRandom


class PoissonBatchSampler(Sampler[list[int]]):
    """Exactly ``steps`` batches; row ``i`` is in a batch with probability ``sample_rate``."""

    def __init__(
        self, num_rows: int, *, sample_rate: float, steps: int, rng: SecureRandom
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise InvalidPrivacyParameter(f"steps must be a positive integer, got {steps!r}")
        if num_rows <= 0:
            raise InvalidPrivacyParameter("Poisson sampling needs at least one row")
        self.num_rows = num_rows
        self.sample_rate = sample_rate
        self.steps = steps
        self._rng = rng

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = self._rng.poisson_mask(self.num_rows, rate=self.sample_rate)
            yield np.flatnonzero(mask.numpy()).tolist()


def poisson_loader(
    data_loader: DataLoader, *, sample_rate: float, steps: int, rng: SecureRandom
) -> DataLoader:
    """``data_loader``'s dataset and collate function, batched by :class:`PoissonBatchSampler`."""
    sampler = PoissonBatchSampler(
        len(data_loader.dataset), sample_rate=sample_rate, steps=steps, rng=rng
    )
    # Our own torch generator: DataLoader draws a worker base seed on every iteration,
    # which would otherwise advance torch's global RNG (it never picks rows here).
    return DataLoader(
        data_loader.dataset,
        batch_sampler=sampler,
        collate_fn=data_loader.collate_fn,
        generator=torch.Generator(),
    )


__all__ = ["PoissonBatchSampler", "poisson_loader"]
