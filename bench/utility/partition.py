"""Splitting a dataset's training rows among partners, IID or not.

Non-IID follows ``fedctr.federation.demo.datasets.split_by_column``: every row with the same value
of the key columns goes to one partner, as shops with different catalogues would hold
different ads. Values are packed largest first into the partner with the fewest rows,
so partners are as even as the key allows (one value can outweigh a partner's share).
"""

from __future__ import annotations

import numpy as np

from fedctr.models.logs.reader import EncodedData


def iid_split(data: EncodedData, partners: int, *, seed: int) -> list[EncodedData]:
    """Uniformly random, equal-sized shards."""
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.take(np.sort(part)) for part in np.array_split(order, partners)]


def noniid_split(data: EncodedData, partners: int, *, key_columns: list[int]) -> list[EncodedData]:
    """Each value of the key columns held by exactly one partner (deterministic)."""
    _, group, sizes = np.unique(
        data.x_cat[:, key_columns], axis=0, return_inverse=True, return_counts=True
    )
    group = group.ravel()
    owner_of_group = np.empty(len(sizes), dtype=np.int64)
    load = np.zeros(partners, dtype=np.int64)
    for g in np.lexsort((np.arange(len(sizes)), -sizes)):  # largest first, ties by id
        k = int(np.argmin(load))
        owner_of_group[g] = k
        load[k] += sizes[g]
    owner = owner_of_group[group]
    return [data.take(np.flatnonzero(owner == k)) for k in range(partners)]


def split(
    data: EncodedData, partners: int, *, iid: bool, seed: int, key_columns: list[int]
) -> list[EncodedData]:
    if partners < 1:
        raise ValueError("partners must be >= 1")
    if iid:
        return iid_split(data, partners, seed=seed)
    return noniid_split(data, partners, key_columns=key_columns)


__all__ = ["iid_split", "noniid_split", "split"]
