"""Registry of file-format readers, keyed by the ``format`` of a spec's ``[source]``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from fedctr.models import FeatureSpec
from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.formats.base import FormatReader, ReadResult
from fedctr.plugins import Registry

FORMATS: Registry[type[FormatReader]] = Registry("file format")


def register_format(name: str) -> Callable[[type[FormatReader]], type[FormatReader]]:
    """Class decorator registering a reader under ``name``; a name is registered once."""

    def wrap(cls: type[FormatReader]) -> type[FormatReader]:
        FORMATS.add(name, cls)
        cls.name = name
        return cls

    return wrap


def available_formats() -> tuple[str, ...]:
    return FORMATS.names()


def get_reader(name: str, *, file: str) -> FormatReader:
    """A fresh reader for format ``name``; ``file`` is named in the error if it is unknown."""
    if name not in FORMATS:
        raise DataFileError(
            f"{file}: the feature spec's [source] format '{name}' is unknown; "
            f"choose one of {available_formats()}",
            file=file,
            problem=DataProblem.BAD_LAYOUT,
        )
    return FORMATS.get(name)()


class _SpecColumns:
    """How the spec's columns are found in one file: its reader, options and names."""

    def __init__(self, path: Path, spec: FeatureSpec, *, user_key: bool) -> None:
        self.path = path
        layout = spec.source
        self.reader = get_reader(layout.format, file=str(path))
        self.options = dict(layout.options)
        unknown = sorted(set(self.options) - self.reader.options)
        if unknown:
            raise DataFileError(
                f"{path}: [source] options {unknown} are not understood by format "
                f"'{layout.format}' (it reads {sorted(self.reader.options) or 'no options'})",
                file=str(path),
                problem=DataProblem.BAD_LAYOUT,
            )
        self.names = list(spec.read_columns if user_key else (spec.label, *spec.column_names))
        self.file_names = [layout.file_column(c, label=spec.label) for c in self.names]
        if len(set(self.file_names)) != len(self.file_names):
            raise DataFileError(
                f"{path}: the spec's [source] maps two spec columns to one file column",
                file=str(path),
                problem=DataProblem.BAD_LAYOUT,
            )
        self.to_spec = dict(zip(self.file_names, self.names, strict=True))

    @contextmanager
    def spec_names(self) -> Iterator[None]:
        """Readers know the file's column names; what may leave is the spec's name."""
        try:
            yield
        except DataFileError as exc:
            exc.column = None if exc.column is None else self.to_spec.get(exc.column)
            raise

    def renamed(self, result: ReadResult) -> ReadResult:
        problems = tuple(
            replace(p, column=self.to_spec[p.column]) if p.column in self.to_spec else p
            for p in result.problems
        )
        table = result.table.select(self.file_names).rename_columns(self.names)
        return ReadResult(table, problems)


def read_spec_columns(path: str | Path, spec: FeatureSpec, *, user_key: bool = True) -> ReadResult:
    """The label and feature columns of ``path`` (and the user-key columns, unless
    ``user_key`` is False), named as in the spec.

    The spec's ``[source]`` table says the format and the file's own column names;
    without it the format follows the file suffix and the names are the spec's.
    Errors and row problems name the spec's columns (a :class:`DataFileError`'s
    ``column`` is ``None`` when the file column stands for no spec column); the
    messages keep the file's own names for the partner.
    """
    columns = _SpecColumns(Path(path), spec, user_key=user_key)
    with columns.spec_names():
        result = columns.reader.read(columns.path, columns.file_names, columns.options)
    return columns.renamed(result)


def iter_spec_columns(
    path: str | Path, spec: FeatureSpec, *, user_key: bool = True, rows: int = 1 << 16
) -> Iterator[ReadResult]:
    """:func:`read_spec_columns` as consecutive tables of about ``rows`` rows, streamed
    where the format allows it (:meth:`FormatReader.batches`)."""
    columns = _SpecColumns(Path(path), spec, user_key=user_key)
    with columns.spec_names():
        for result in columns.reader.batches(
            columns.path, columns.file_names, columns.options, rows=rows
        ):
            yield columns.renamed(result)


__all__ = [
    "FORMATS",
    "available_formats",
    "get_reader",
    "iter_spec_columns",
    "read_spec_columns",
    "register_format",
]
