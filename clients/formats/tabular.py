"""Files with named columns: CSV, TSV and Parquet (``auto`` picks one by suffix)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clients.errors import DataFileError
from clients.formats.base import FormatReader, ReadResult
from clients.formats.registry import register_format
from models.source_layout import OptionValue

_BY_SUFFIX = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".txt": "csv", ".tsv": "tsv"}


def require_columns(path: Path, present: list[str], required: list[str]) -> None:
    """Reject the file, naming what is missing and what it has."""
    missing = [c for c in required if c not in present]
    if missing:
        raise DataFileError(
            f"{path}: missing column(s) {missing} required by the feature spec; "
            f"the file has {present[:12]}{'...' if len(present) > 12 else ''}",
            file=str(path),
            column=missing[0],
        )


def read_parquet(path: Path, columns: list[str]) -> pa.Table:
    try:
        schema = pq.read_schema(path)
        require_columns(path, schema.names, columns)
        return pq.read_table(path, columns=columns)
    except pa.ArrowInvalid as exc:
        raise DataFileError(
            f"{path}: cannot parse the file as parquet: {exc}", file=str(path)
        ) from exc
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}", file=str(path)) from exc


def read_delimited(path: Path, columns: list[str], delimiter: str, kind: str) -> pa.Table:
    """Every requested column as strings (nulls for blanks); parsing is the loader's job."""
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        names = pacsv.open_csv(path, parse_options=parse).schema.names
        require_columns(path, names, columns)
        return pacsv.read_csv(
            path,
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataFileError(
            f"{path}: cannot parse the file as {kind}: {exc}", file=str(path)
        ) from exc
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}", file=str(path)) from exc


@register_format("parquet")
class Parquet(FormatReader):
    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        return ReadResult(read_parquet(path, columns))


@register_format("csv")
class Csv(FormatReader):
    """Comma-separated with a header row; ``delimiter`` may name another character."""

    options = frozenset({"delimiter"})

    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        delimiter = options.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise DataFileError(
                f"{path}: [source] delimiter must be one character, got {delimiter!r}",
                file=str(path),
            )
        return ReadResult(read_delimited(path, columns, delimiter, "csv"))


@register_format("tsv")
class Tsv(FormatReader):
    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        return ReadResult(read_delimited(path, columns, "\t", "tsv"))


@register_format("auto")
class BySuffix(FormatReader):
    """The default: ``.csv``/``.txt`` CSV, ``.tsv`` TSV, ``.parquet``/``.pq`` Parquet."""

    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        kind = _BY_SUFFIX.get(path.suffix.lower())
        if kind is None:
            raise DataFileError(
                f"{path}: unsupported file type '{path.suffix}'; use .csv, .tsv or .parquet, "
                "or say the format in the feature spec's [source] table",
                file=str(path),
            )
        if kind == "parquet":
            return ReadResult(read_parquet(path, columns))
        return ReadResult(read_delimited(path, columns, "\t" if kind == "tsv" else ",", kind))


__all__ = ["BySuffix", "Csv", "Parquet", "Tsv", "read_delimited", "read_parquet", "require_columns"]
