"""DP selection of the embedding rows a step updates (DP-AdaFEST; Ghazi et al., NeurIPS
2023, "Sparsity-Preserving Differentially Private Training of Large Embedding Models").

Plain DP-SGD adds noise to *every* row of every embedding table at every step. On
high-cardinality tables almost all rows are rare: their gradients are nothing but that
noise, and Adam turns it into a random walk of size ~lr per step for each of them. Here a
step first releases, with its own Gaussian noise, how many units (examples or users)
touched each row: unit ``u`` touching ``n_u`` distinct rows (over all tables) adds
``1 / sqrt(n_u)`` to each, so its contribution vector has L2 norm 1; every row's count
gets N(0, sigma_select^2). Rows whose noisy count exceeds the threshold get the
step's clipped gradient and its noise; the others get neither (their gradient is 0).

Privacy: the count release is a Gaussian mechanism of sensitivity 1 on the same
Poisson batch as the gradient's (sensitivity C); the pair is one Gaussian with noise
multiplier (sigma_grad^-2 + sigma_select^-2)^(-1/2), which the accountant is given
(:attr:`fedctr.privacy.budget.DPSGDRound.accounted_noise_multiplier`). Which rows are
selected is post-processing of the noisy counts; restricting the clipped gradient to
them only lowers its sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedctr.privacy.randomness import SecureRandom


@dataclass(frozen=True)
class Touched:
    """The distinct rows one table's lookups hit, per unit: ``unit[i]`` touched ``row[i]``."""

    unit: torch.Tensor  # [M] long
    row: torch.Tensor  # [M] long


def touched_rows(indices: torch.Tensor, padding_idx: int | None) -> Touched:
    """Distinct (unit, row) pairs of ``[U, P]`` lookups (the padding row excluded)."""
    units, positions = indices.shape
    if units == 0 or positions == 0:
        empty = indices.new_zeros(0)
        return Touched(empty, empty)
    ordered, _ = indices.sort(dim=1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    if padding_idx is not None:
        starts &= ordered != padding_idx
    unit = torch.arange(units, device=indices.device).unsqueeze(1).expand_as(ordered)
    return Touched(unit[starts], ordered[starts])


def noisy_counts(
    tables: list[tuple[int, Touched]],
    *,
    units: int,
    noise_multiplier: float,
    rng: SecureRandom,
) -> list[torch.Tensor]:
    """Per table (rows, touched): each row's count of units, every unit weighted
    1/sqrt(its distinct rows over all tables), plus N(0, noise_multiplier^2) on every
    row of every table, touched or not."""
    per_unit = torch.zeros(units)
    for _, touched in tables:
        per_unit.index_add_(0, touched.unit, torch.ones(len(touched.unit)))
    weight = torch.where(per_unit > 0, per_unit.clamp(min=1).rsqrt(), torch.zeros_like(per_unit))
    out = []
    for rows, touched in tables:
        counts = torch.empty(rows)
        rng.gaussian_(counts, std=noise_multiplier)
        counts.index_add_(0, touched.row, weight[touched.unit])
        out.append(counts)
    return out


def select_rows(
    tables: list[tuple[int, Touched, int | None]],
    *,
    units: int,
    noise_multiplier: float,
    threshold: float,
    rng: SecureRandom,
) -> list[torch.Tensor]:
    """Per table (rows, touched, padding_idx): the rows whose noisy count exceeds
    ``threshold`` (post-processing of :func:`noisy_counts`; never the padding row)."""
    counts = noisy_counts(
        [(rows, touched) for rows, touched, _ in tables],
        units=units,
        noise_multiplier=noise_multiplier,
        rng=rng,
    )
    masks = []
    for c, (_, _, padding_idx) in zip(counts, tables, strict=True):
        selected = c > threshold
        if padding_idx is not None:
            selected[padding_idx] = False
        masks.append(selected)
    return masks


__all__ = ["Touched", "noisy_counts", "select_rows", "touched_rows"]
