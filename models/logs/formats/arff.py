"""Weka ARFF (dense): ``@attribute`` lines name the columns, ``@data`` rows are CSV.

``?`` is a missing value; values may be single-quoted. Sparse ARFF rows (``{...}``)
are not supported and reject the file.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.formats.base import FormatReader, ReadResult
from fedctr.models.logs.formats.registry import register_format
from fedctr.models.logs.formats.tabular import require_columns
from fedctr.models.source_layout import OptionValue


def arff_header(path: Path) -> tuple[list[str], int]:
    """Attribute names and the number of lines up to and including ``@data``."""
    names: list[str] = []
    number = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                text = line.strip()
                lower = text.lower()
                if lower.startswith("@attribute"):
                    try:
                        names.append(shlex.split(text[len("@attribute") :])[0])
                    except (ValueError, IndexError) as exc:
                        raise DataFileError(
                            f"{path}: line {number}: cannot read the attribute name: {exc}",
                            file=str(path),
                            problem=DataProblem.BAD_HEADER,
                        ) from exc
                elif lower.startswith("@data"):
                    return names, number
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(
            f"cannot read {path} as ARFF: {exc}",
            file=str(path),
            problem=DataProblem.UNREADABLE_FILE,
        ) from exc
    if number == 0:
        raise DataFileError(
            f"{path}: the file is empty", file=str(path), problem=DataProblem.EMPTY_FILE
        )
    raise DataFileError(
        f"{path}: no @data line; not an ARFF file (its header must declare @attribute "
        "lines, then @data)",
        file=str(path),
        problem=DataProblem.BAD_HEADER,
    )


@register_format("arff")
class Arff(FormatReader):
    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        names, header_lines = arff_header(path)
        require_columns(path, names, columns)
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(skip_rows=header_lines, column_names=names),
                parse_options=pacsv.ParseOptions(quote_char="'"),
                convert_options=pacsv.ConvertOptions(
                    include_columns=columns,
                    column_types={c: pa.string() for c in columns},
                    null_values=["?"],
                    strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise DataFileError(
                f"{path}: cannot parse the @data section (sparse ARFF is not supported): {exc}",
                file=str(path),
                problem=DataProblem.BAD_LAYOUT,
            ) from exc
        return ReadResult(table)


__all__ = ["Arff", "arff_header"]
