"""The seam between the loader and a file format: read named columns as an Arrow table.

A reader only lays the file out as columns. Everything the spec decides (labels,
numeric transforms, hashing, the bad-row policy) happens afterwards in
:mod:`fedctr.models.logs.reader`, identically for every format. A reader that finds a row it
cannot lay out (say, a libSVM line with the wrong number of tokens) reports it as a
:class:`RowProblem` and leaves nulls in that row; the loader then skips or rejects
it by the partner's policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from fedctr.models.logs.errors import DataProblem
from fedctr.models.source_layout import OptionValue


@dataclass(frozen=True)
class RowProblem:
    """A row the reader could not lay out: ``row`` is 0-based, ``column`` one of the
    requested file columns (the loader reports it under the spec's name), ``problem``
    the reason class that may leave the partner."""

    row: int
    column: str
    reason: str
    problem: DataProblem = DataProblem.BAD_LAYOUT


@dataclass(frozen=True)
class ReadResult:
    """The requested columns (file names), one row per data row, and rows with problems."""

    table: pa.Table
    problems: tuple[RowProblem, ...] = ()


class FormatReader(ABC):
    """Reads one file format; registered by name with :func:`register_format`."""

    name: str
    options: frozenset[str] = frozenset()  # the ``[source]`` options it understands

    @abstractmethod
    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        """Columns ``columns`` of ``path`` (a missing one rejects the file)."""

    def batches(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue], *, rows: int
    ) -> Iterator[ReadResult]:
        """The same columns as :meth:`read`, as consecutive tables of about ``rows`` rows
        in file order (problems numbered within each table).

        This default reads the file whole and slices it, so its memory is the file's;
        formats Arrow can stream (CSV, TSV, Parquet) override it to hold one block.
        """
        result = self.read(path, columns, options)
        table = result.table
        for start in range(0, max(table.num_rows, 1), rows):
            yield ReadResult(
                table.slice(start, rows),
                tuple(
                    replace(p, row=p.row - start)
                    for p in result.problems
                    if start <= p.row < start + rows
                ),
            )


__all__ = ["FormatReader", "ReadResult", "RowProblem"]
