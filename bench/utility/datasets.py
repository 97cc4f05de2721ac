"""The real ad samples of the utility benchmark, encoded through their feature specs.

Each dataset is read exactly as a partner reads its log
(``fedctr.models.logs.reader.read_partner_log`` with the built-in spec, whose
``[source]`` table names the file format), once per benchmark process. The test
split is fixed, so every method and seed is scored on the same rows: the dataset's
own validation/test file where it ships one, otherwise a seeded 20% holdout (keyed
by row content with the public key ``seed_key(HOLDOUT_SEED)``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.utility.highcard import generate_highcard
from fedctr.clients.holdout import seed_key
from fedctr.models import FeatureSpec, builtin_spec_path, load_spec
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
HOLDOUT_SEED = 20240601


@dataclass(frozen=True)
class BenchDataset:
    """Train rows (to be split among partners), fixed test rows, and how to split non-IID."""

    name: str
    spec: FeatureSpec
    spec_path: Path
    train: EncodedData
    test: EncodedData
    noniid_key: tuple[str, ...]  # categorical columns whose values a partner holds exclusively
    note: str

    def key_columns(self) -> list[int]:
        names = [f.name for f in self.spec.categorical]
        return [names.index(c) for c in self.noniid_key]


def _read(path: Path, spec: FeatureSpec) -> EncodedData:
    return read_partner_log(path, spec, policy=BadRowPolicy.SKIP)


def _subsample(data: EncodedData, rows: int | None, seed: int) -> EncodedData:
    if rows is None or rows >= len(data):
        return data
    index = np.sort(np.random.default_rng(seed).choice(len(data), rows, replace=False))
    return data.take(index)


def _criteo_attribution(root: Path) -> tuple[str, EncodedData, EncodedData, tuple[str, ...], str]:
    folder = root / "criteo_attribution_small"
    spec_name = "criteo_attribution"
    spec = load_spec(builtin_spec_path(spec_name))
    return (
        spec_name,
        _read(folder / "small_train.parquet", spec),
        _read(folder / "small_valid.parquet", spec),
        ("cat1", "cat9"),
        "Parquet; test = small_valid.parquet",
    )


def _criteo_dac_45k(root: Path) -> tuple[str, EncodedData, EncodedData, tuple[str, ...], str]:
    spec_name = "criteo_dac_45k"
    spec = load_spec(builtin_spec_path(spec_name))
    data = _read(root / "criteo_kaggle_dac" / "cafpereira_train_45K_subsetcols.arff", spec)
    # A public key: the benchmark's split is reproducible by anyone (a partner's is not).
    train, test = data.split(0.2, key=seed_key(HOLDOUT_SEED))
    return spec_name, train, test, ("C6", "C14"), "ARFF; test = seeded 20% holdout"


def _ipinyou(root: Path) -> tuple[str, EncodedData, EncodedData, tuple[str, ...], str]:
    folder = root / "ipinyou"
    spec_name = "ipinyou"
    spec = load_spec(builtin_spec_path(spec_name))
    return (
        spec_name,
        _read(folder / "train.fm.txt", spec),
        _read(folder / "test.fm.txt", spec),
        ("field_02", "field_06"),
        "libSVM one-hot; test = test.fm.txt (a later day)",
    )


def split_by_user(
    data: EncodedData, fraction: float, *, key: bytes
) -> tuple[EncodedData, EncodedData]:
    """(train, test) with every user on one side: keyed hash of the user id < fraction."""
    if data.users is None:
        raise ValueError("a per-user split needs the spec's user_key")
    users = np.ascontiguousarray(data.users).view(np.uint64)
    digest = np.frombuffer(
        b"".join(hashlib.blake2b(u.tobytes(), key=key, digest_size=8).digest() for u in users),
        dtype="<u8",
    )
    held = digest < np.uint64(int(fraction * 2**64))
    return data.take(np.flatnonzero(~held)), data.take(np.flatnonzero(held))


def _talkingdata(root: Path) -> tuple[str, EncodedData, EncodedData, tuple[str, ...], str]:
    spec_name = "talkingdata"
    spec = load_spec(builtin_spec_path(spec_name))
    data = _read(root / "talkingdata" / "train_sample.csv", spec)
    train, test = split_by_user(data, 0.2, key=seed_key(HOLDOUT_SEED))
    return (
        spec_name,
        train,
        test,
        ("app",),
        "CSV read in place (stray header bytes mapped by the spec's [source]); "
        "test = seeded 20% of users (ip+device+os), no user on both sides",
    )


def _highcard(root: Path) -> tuple[str, EncodedData, EncodedData, tuple[str, ...], str]:
    data_path, spec_path = generate_highcard(Path(tempfile.gettempdir()) / "fedctr-bench")
    spec = load_spec(spec_path)
    train, test = _read(data_path, spec).split(0.2, key=seed_key(HOLDOUT_SEED))
    return (
        str(spec_path),
        train,
        test,
        ("c06",),
        "generated (bench/utility/highcard.py): 19 columns, five with 10^4-2.5x10^4 "
        "values, planted logistic signal; test = seeded 20% holdout",
    )


LOADERS: dict[str, Callable[[Path], tuple[str, EncodedData, EncodedData, tuple[str, ...], str]]] = {
    "criteo_attribution": _criteo_attribution,
    "criteo_dac_45k": _criteo_dac_45k,
    "ipinyou": _ipinyou,
    "talkingdata": _talkingdata,
    "highcard": _highcard,
}


def load_dataset(
    name: str,
    *,
    root: Path = DATA_ROOT,
    max_train: int | None = None,
    max_test: int | None = None,
) -> BenchDataset:
    """Read and encode one dataset; ``max_*`` subsample rows (seeded) for quick runs."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset '{name}'; choose from {sorted(LOADERS)}")
    spec_name, train, test, key, note = LOADERS[name](root)
    spec_path = Path(spec_name) if spec_name.endswith(".json") else builtin_spec_path(spec_name)
    return BenchDataset(
        name=name,
        spec=load_spec(spec_path),
        spec_path=spec_path,
        train=_subsample(train, max_train, HOLDOUT_SEED + 1),
        test=_subsample(test, max_test, HOLDOUT_SEED + 2),
        noniid_key=key,
        note=note,
    )


__all__ = ["DATA_ROOT", "LOADERS", "BenchDataset", "load_dataset", "split_by_user"]
