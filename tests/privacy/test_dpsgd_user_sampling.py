"""User-level Poisson sampling (issue 14's building block): users, not rows, are
sampled at the declared rate; a sampled user brings all of its selected rows and never
more than the declared bound; the schedule is exactly the declared steps."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from torch.utils.data import TensorDataset

from fedctr.privacy.dpsgd.sampling import UserPoissonLoader
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.randomness import SecureRandom


def _loader(users: torch.Tensor, *, rate: float, steps: int, max_rows: int, key: int = 1):
    rows = len(users)
    data = TensorDataset(torch.arange(rows), torch.arange(rows, dtype=torch.float32) * 2)
    return UserPoissonLoader(
        data,
        users=users,
        sample_rate=rate,
        steps=steps,
        max_rows=max_rows,
        rng=SecureRandom.from_key(bytes([key]) * 32),
    )


def _users(seed: int = 0, n_users: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 9, (n_users,), generator=g)  # 1-8 rows per user
    keys = torch.randint(10**6, 10**9, (n_users,), generator=g)
    return keys.repeat_interleave(counts)[torch.randperm(int(counts.sum()), generator=g)]


def test_a_sampled_user_brings_all_its_selected_rows_and_at_most_the_bound() -> None:
    users = _users()
    loader = _loader(users, rate=0.3, steps=40, max_rows=3)
    selected: dict[int, set[int]] = {}
    for rows, _, batch_users in loader:
        assert torch.equal(users[rows], batch_users)  # the user column matches its rows
        for user in batch_users.unique().tolist():
            mine = set(rows[batch_users == user].tolist())
            assert len(mine) <= 3
            assert mine == selected.setdefault(user, mine)  # the same rows every time
    for user, mine in selected.items():
        assert len(mine) == min(3, int((users == user).sum()))


def test_users_are_included_independently_at_the_declared_rate() -> None:
    users = _users(1)
    n_users, steps, rate = len(users.unique()), 300, 0.1
    included = 0
    for _, _, batch_users in _loader(users, rate=rate, steps=steps, max_rows=8):
        included += len(batch_users.unique())
    trials = n_users * steps
    p = scipy.stats.binomtest(included, trials, rate).pvalue
    assert p > 1e-4, (included / trials, rate)
    assert abs(included / trials - rate) < 5 * math.sqrt(rate * (1 - rate) / trials)


def test_exactly_the_declared_steps_even_when_empty() -> None:
    loader = _loader(_users(2, n_users=3), rate=1e-9, steps=7, max_rows=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 7
    assert all(len(b[0]) == 0 for b in batches)


def test_bad_schedules_are_refused() -> None:
    users = _users(3, n_users=5)
    with pytest.raises(InvalidPrivacyParameter):
        _loader(users, rate=0.0, steps=3, max_rows=2)
    with pytest.raises(InvalidPrivacyParameter):
        _loader(users, rate=0.5, steps=3, max_rows=0)
