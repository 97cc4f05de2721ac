"""Poisson sampling at the declared rate: exactly the declared number of batches, every row
included independently at rate q (whatever the number of rows), aligned columns, empty
batches shaped like full ones, all drawn from the SecureRandom."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fedctr.privacy.dpsgd.errors import SeamArgumentError
from fedctr.privacy.dpsgd.sampling import PoissonLoader, poisson_loader
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.randomness import SecureRandom

KEY = bytes(range(32))


def table(rows: int) -> TensorDataset:
    """Column 0 is the row id, so a batch says which rows it holds."""
    ids = torch.arange(rows)
    return TensorDataset(ids, ids.float().unsqueeze(1) * torch.ones(rows, 3), ids.float() / 2)


def loader(rows: int, *, rate: float, steps: int, key: bytes = KEY) -> PoissonLoader:
    return PoissonLoader(table(rows), sample_rate=rate, steps=steps, rng=SecureRandom.from_key(key))


@pytest.mark.parametrize("steps", [0, 1, 7])
def test_exactly_the_declared_number_of_batches(steps: int) -> None:
    batches = list(loader(50, rate=0.2, steps=steps))

    assert len(batches) == steps == len(loader(50, rate=0.2, steps=steps))


def test_every_row_is_included_independently_at_the_declared_rate() -> None:
    """Over 300 steps each row's count is Binomial(300, q): the total within 5 s.d., every
    row within 6 s.d.; batch sizes average q * rows (not rows / steps)."""
    rows, q, steps = 200, 0.3, 300
    counts = torch.zeros(rows)
    sizes = []
    for ids, _, _ in loader(rows, rate=q, steps=steps):
        counts[ids] += 1
        sizes.append(len(ids))
    sd = math.sqrt(steps * q * (1 - q))

    assert abs(float(counts.sum()) - rows * steps * q) < 5 * sd * math.sqrt(rows)
    assert float((counts - steps * q).abs().max()) < 6 * sd
    assert sum(sizes) / steps == pytest.approx(rows * q, rel=0.05)
    assert len(set(sizes)) > 5


@pytest.mark.parametrize("rows", [100, 10_000])
def test_the_rate_is_per_row_whatever_the_number_of_rows(rows: int) -> None:
    """Same declared q, 100x the rows: 100x the expected batch, same number of steps."""
    sizes = [len(ids) for ids, _, _ in loader(rows, rate=0.05, steps=40)]

    assert len(sizes) == 40
    assert sum(sizes) / 40 == pytest.approx(0.05 * rows, rel=5 / math.sqrt(0.05 * rows * 40))


def test_batches_hold_whole_rows_in_order() -> None:
    """Each batch is the sampled rows of every column, aligned, in row order, no repeats."""
    for ids, features, halves in loader(500, rate=0.1, steps=5):
        assert torch.equal(ids, torch.sort(ids).values)
        assert len(torch.unique(ids)) == len(ids)
        assert torch.equal(features, ids.float().unsqueeze(1) * torch.ones(len(ids), 3))
        assert torch.equal(halves, ids.float() / 2)


def test_an_empty_batch_keeps_the_columns_shapes_and_dtypes() -> None:
    """At a tiny rate every batch is empty: zero rows, same trailing shape and dtype."""
    batches = list(loader(20, rate=1e-9, steps=3))

    assert len(batches) == 3
    for ids, features, halves in batches:
        assert ids.shape == (0,) and ids.dtype == torch.int64
        assert features.shape == (0, 3) and features.dtype == torch.float32
        assert halves.shape == (0,)


def test_same_key_same_batches_and_each_pass_draws_anew() -> None:
    first, again = loader(300, rate=0.1, steps=4), loader(300, rate=0.1, steps=4)
    one = [ids for ids, _, _ in first]

    assert all(torch.equal(a, b) for a, b in zip(one, [i for i, _, _ in again], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(one, [i for i, _, _ in first], strict=True))
    other = [ids for ids, _, _ in loader(300, rate=0.1, steps=4, key=bytes(32))]
    assert not all(torch.equal(a, b) for a, b in zip(one, other, strict=True))


def test_a_plain_loader_contributes_only_its_dataset() -> None:
    data = table(64)
    wrapped = poisson_loader(
        DataLoader(data, batch_size=8, shuffle=True),
        sample_rate=0.5,
        steps=3,
        rng=SecureRandom.from_key(KEY),
    )

    assert wrapped.dataset is data and len(wrapped) == 3 and wrapped.sample_rate == 0.5


class _Rows(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(i)


def test_bad_schedules_and_sources_are_refused() -> None:
    rng = SecureRandom.from_key(KEY)
    for rate, steps in ((0.0, 1), (1.5, 1), (float("nan"), 1), (0.1, -1), (0.1, 1.5), (0.1, True)):
        with pytest.raises(InvalidPrivacyParameter):
            PoissonLoader(table(4), sample_rate=rate, steps=steps, rng=rng)
    with pytest.raises(SeamArgumentError, match="TensorDataset"):
        PoissonLoader(_Rows(), sample_rate=0.5, steps=1, rng=rng)  # type: ignore[arg-type]
    with pytest.raises(SeamArgumentError, match="SecureRandom"):
        PoissonLoader(table(4), sample_rate=0.5, steps=1, rng=torch.Generator())  # type: ignore[arg-type]
