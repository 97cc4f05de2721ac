"""Where the demo's partner logs come from: generated, or real files given with ``--data``.

``--data DIR`` accepts either one file per partner (``*.csv``/``*.parquet``), or a
dataset folder with a training file and a validation/test file, which is split
into partners by a categorical column (non-IID: each partner holds different
values of that column, as shops with different catalogues would). In both layouts a
file whose name says ``test``, ``valid`` or ``eval`` is the platform's evaluation
file, never a partner (``test`` preferred). The spec is the built-in one whose
columns the files have, or ``--spec``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fedctr.federation.demo.synthetic import generate_federation
from fedctr.models import (
    FeatureSpec,
    FeatureSpecError,
    builtin_spec_path,
    canonical_scalar,
    load_spec,
)

logger = logging.getLogger(__name__)

BUILTIN_SPECS = ("demo", "criteo_attribution", "criteo_kaggle_dac")
LOG_SUFFIXES = (".csv", ".parquet", ".tsv")
# A file whose name holds one of these is the platform's evaluation file (in this order
# of preference), never a partner's log.
EVAL_MARKERS = ("test", "valid", "eval")


class DatasetError(FeatureSpecError):
    """The ``--data`` folder cannot be turned into a federation."""


@dataclass(frozen=True)
class FederationData:
    """Partner log files, the platform's evaluation file and the spec they follow."""

    partners: dict[str, Path]
    eval_data: Path | None
    spec_file: Path
    spec: FeatureSpec
    description: str


def _columns(path: Path) -> set[str]:
    if path.suffix == ".parquet":
        return set(pq.read_schema(path).names)
    return set(pacsv.open_csv(path).schema.names)


def _read(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path)


def detect_spec(*paths: Path) -> Path:
    """The built-in spec whose label and feature columns all exist in one of ``paths``
    (tried in order: one partner's broken header must not hide the spec of the others;
    that partner's node reports its file itself)."""
    seen: list[str] = []
    for path in paths:
        try:
            present = _columns(path)
        except (OSError, pa.ArrowInvalid) as exc:
            seen.append(f"{path.name}: unreadable ({exc})")
            continue
        for name in BUILTIN_SPECS:
            spec_path = builtin_spec_path(name)
            spec = load_spec(spec_path)
            if set(spec.read_columns) <= present:
                return spec_path
        seen.append(f"{path.name}: columns {sorted(present)[:10]}")
    raise DatasetError(
        f"no built-in feature spec matches these files ({'; '.join(seen)}); "
        "write one for your files and pass --spec"
    )


def synthetic_federation(out_dir: Path) -> FederationData:
    partners, test = generate_federation(out_dir)
    spec_file = builtin_spec_path("demo")
    return FederationData(
        partners,
        test,
        spec_file,
        load_spec(spec_file),
        "generated federation: 3 partners (2 Parquet, 1 CSV with bad rows), non-IID",
    )


def split_by_column(table: pa.Table, column: str, num_partners: int, salt: str) -> list[np.ndarray]:
    """Row indices per partner: all rows with the same ``column`` value go to one partner."""
    values = table.column(column).to_pylist()
    owner = np.fromiter(
        (
            int.from_bytes(
                hashlib.sha256(f"{salt}|{canonical_scalar(v)}".encode()).digest()[:8], "little"
            )
            % num_partners
            for v in values
        ),
        dtype=np.int64,
        count=len(values),
    )
    return [np.flatnonzero(owner == k) for k in range(num_partners)]


def real_federation(
    data_dir: Path,
    work_dir: Path,
    *,
    spec_file: Path | None,
    num_partners: int,
    split_column: str | None,
) -> FederationData:
    """Partner files from ``data_dir`` (see module docstring)."""
    if not data_dir.is_dir():
        raise DatasetError(f"--data {data_dir}: not a folder")
    files = sorted(p for p in data_dir.iterdir() if p.suffix in LOG_SUFFIXES)
    held = sorted(
        (p for p in files if any(t in p.stem.lower() for t in EVAL_MARKERS)),
        key=lambda p: (EVAL_MARKERS.index(_marker(p)), p.name),
    )
    files = [p for p in files if p not in held]
    train = [p for p in files if "train" in p.name]
    if train and held:
        spec_file = spec_file or detect_spec(train[0])
        spec = load_spec(spec_file)
        column = split_column or (spec.categorical[0].name if spec.categorical else None)
        if column is None:
            raise DatasetError("the spec has no categorical column to split partners by")
        table = _read(train[0])
        parts_dir = work_dir / "partner-data"
        parts_dir.mkdir(parents=True, exist_ok=True)
        partners: dict[str, Path] = {}
        for k, rows in enumerate(split_by_column(table, column, num_partners, spec.salt)):
            path = parts_dir / f"partner-{k + 1}.parquet"
            pq.write_table(table.take(pa.array(rows)), path)
            partners[f"partner-{k + 1}"] = path
        sizes = ", ".join(str(pq.read_metadata(p).num_rows) for p in partners.values())
        return FederationData(
            partners,
            held[0],
            spec_file,
            spec,
            f"{train[0].name} split into {num_partners} partners by '{column}' "
            f"(rows: {sizes}); platform evaluates on {held[0].name}",
        )
    if not files:
        raise DatasetError(f"--data {data_dir}: no partner .csv/.parquet files")
    spec_file = spec_file or detect_spec(*files)
    partners = {p.stem.replace("_", "-").replace(".", "-"): p for p in files}
    evaluation = held[0] if held else None
    where = f"; platform evaluates on {evaluation.name}" if evaluation else ""
    return FederationData(
        partners,
        evaluation,
        spec_file,
        load_spec(spec_file),
        f"{len(files)} partner files from {data_dir}{where}",
    )


def _marker(path: Path) -> str:
    stem = path.stem.lower()
    return next(t for t in EVAL_MARKERS if t in stem)


__all__ = [
    "DatasetError",
    "FederationData",
    "detect_spec",
    "real_federation",
    "split_by_column",
    "synthetic_federation",
]
