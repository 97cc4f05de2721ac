"""Poisson sampling at a declared rate, for a declared number of steps, from a CSPRNG.

Opacus' ``DPDataLoader`` samples at ``q = 1 / len(loader)`` for ``len(loader)``
steps per epoch, both functions of the row count ``n``, and draws from torch's
generator: the accountant's epsilon, the steps in the ledger and the averaging
constant then reveal ``n``, and the sampling is predictable. Here ``q`` and the
number of steps come from the partner's config, so everything a release states is
data-independent; only the batches depend on the rows, which is what the
subsampled Gaussian mechanism accounts for. Each row is included independently with
probability ``floor(rate * 2**64) / 2**64``, drawn by
:meth:`fedctr.privacy.randomness.SecureRandom.poisson_indices`: the gaps between
included rows, exactly geometric, so a step costs words per *sampled* row, not per
row of the log (:mod:`fedctr.privacy.poisson`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fedctr.privacy.dpsgd.errors import SeamArgumentError
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.poisson import PoissonSampler
from fedctr.privacy.randomness import SecureRandom
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)


class PoissonLoader:
    """Exactly ``steps`` batches; in each, every row independently with probability
    ``sample_rate`` (at most: see :class:`fedctr.privacy.poisson.PoissonSampler`).

    A batch is the tuple of the dataset's tensors indexed by the sampled rows, in row
    order (one gather per tensor, no per-row fetch). A batch with no row has zero rows
    and is yielded like any other: the step it drives must still add noise and be
    accounted, or an empty step would show in the output. Every iteration draws fresh
    masks, so iterating twice runs ``2 * steps`` steps.
    """

    def __init__(
        self, dataset: TensorDataset, *, sample_rate: float, steps: int, rng: SecureRandom
    ) -> None:
        if not isinstance(dataset, TensorDataset) or not dataset.tensors:
            raise SeamArgumentError(
                "Poisson sampling reads a TensorDataset (one tensor per column), "
                f"got {type(dataset).__name__}"
            )
        check_schedule(sample_rate=sample_rate, steps=steps)
        if not isinstance(rng, SecureRandom):
            raise SeamArgumentError(
                "Poisson sampling draws from a fedctr.privacy.randomness.SecureRandom"
            )
        self.dataset = dataset
        self.sample_rate = float(sample_rate)
        self.steps = steps
        self._rng = rng
        self._sampler = PoissonSampler(self.sample_rate)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        rows = len(self.dataset)
        for _ in range(self.steps):
            index = self._rng.poisson_indices(rows, sampler=self._sampler)
            yield gather(self.dataset, index)


class UserPoissonLoader:
    """User-level Poisson sampling.

    The unit is a person: each of ``steps`` batches includes every *user*
    independently with probability ``sample_rate``, and with a user all of its
    *selected* rows. Selection bounds a user's contribution: before the first step,
    each user keeps at most ``max_rows`` of its rows, the ones with the smallest
    CSPRNG priorities, so which rows a user keeps depends on that user's rows and fresh
    randomness only, never on the other users (what the user-level neighbour relation
    needs). ``users`` is the row -> user id map, local to the partner (salted keys of
    its user column); it never leaves the node.

    Each batch is the dataset's tensors indexed by the sampled rows, plus, last, the
    user id of every sampled row (``UserGroups.of`` lays the batch out per user for
    per-user clipping). An empty batch is yielded like any other.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        *,
        users: torch.Tensor,
        sample_rate: float,
        steps: int,
        max_rows: int,
        rng: SecureRandom,
    ) -> None:
        if not isinstance(dataset, TensorDataset) or not dataset.tensors:
            raise SeamArgumentError("user-level sampling reads a TensorDataset")
        check_schedule(sample_rate=sample_rate, steps=steps)
        _CHECK.integer(max_rows, "max_rows", minimum=1)
        if not isinstance(rng, SecureRandom):
            raise SeamArgumentError(
                "user-level sampling draws from a fedctr.privacy.randomness.SecureRandom"
            )
        rows = len(dataset.tensors[0])
        if users.dim() != 1 or len(users) != rows:
            raise SeamArgumentError(f"users must give one id per row ({rows}), got {users.shape}")
        self.dataset = dataset
        self.sample_rate = float(sample_rate)
        self.steps = steps
        self.max_rows = max_rows
        self._rng = rng
        self.user_ids, user = torch.unique(users, return_inverse=True)
        priority = np.frombuffer(rng.keystream(8 * rows), dtype=np.uint64)
        order = np.lexsort((priority, user.numpy()))
        ordered_user = user[order]
        starts = torch.ones(rows, dtype=torch.bool)
        starts[1:] = ordered_user[1:] != ordered_user[:-1]
        position = torch.arange(rows)
        rank = position - torch.cummax(torch.where(starts, position, 0), 0).values
        kept = torch.from_numpy(order)[rank < max_rows]
        # the selected rows grouped by user (row order within a user): a step gathers
        # its sampled users' runs, in time proportional to the batch
        by_user = kept[torch.argsort(user[kept], stable=True)]
        self._grouped = by_user.numpy()
        counts = np.bincount(user[by_user].numpy(), minlength=len(self.user_ids))
        self._ends = np.cumsum(counts)
        self._starts = self._ends - counts
        self._sampler = PoissonSampler(self.sample_rate)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for _ in range(self.steps):
            sampled = self._rng.poisson_indices(len(self.user_ids), sampler=self._sampler).numpy()
            counts = self._ends[sampled] - self._starts[sampled]
            # positions start..end-1 of every sampled user, concatenated
            offsets = np.repeat(self._starts[sampled] - (np.cumsum(counts) - counts), counts)
            rows = self._grouped[offsets + np.arange(int(counts.sum()))]
            order = np.argsort(rows, kind="stable")  # the batch in row order
            index = torch.from_numpy(rows[order])
            batch_users = self.user_ids[torch.from_numpy(np.repeat(sampled, counts)[order])]
            yield (*gather(self.dataset, index), batch_users)


def gather(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rows ``index`` of every column of ``dataset``: a :class:`~torch.utils.data.TensorDataset`
    (one gather per tensor) or a source with its own ``gather`` (e.g. encoded
    rows read from disk, :class:`fedctr.models.logs.reader.StoredRows`)."""
    own = getattr(dataset, "gather", None)
    if own is not None:
        return tuple(own(index))
    return tuple(t.index_select(0, index) for t in dataset.tensors)  # type: ignore[attr-defined]


def poisson_loader(
    data_loader: DataLoader, *, sample_rate: float, steps: int, rng: SecureRandom
) -> PoissonLoader:
    """Poisson batches over ``data_loader``'s dataset (its batching and order are unused)."""
    return PoissonLoader(data_loader.dataset, sample_rate=sample_rate, steps=steps, rng=rng)


def check_schedule(*, sample_rate: object, steps: object) -> None:
    """A declared Poisson rate in (0, 1] and a whole number of steps >= 0."""
    _CHECK.rate(sample_rate, "sample_rate")
    _CHECK.integer(steps, "steps")


__all__ = ["PoissonLoader", "UserPoissonLoader", "check_schedule", "gather", "poisson_loader"]
