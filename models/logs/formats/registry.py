"""Registry of file-format readers, keyed by the ``format`` of a spec's ``[source]``."""

from __future__ import annotations

from collections.abc import Callable
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


def read_spec_columns(path: str | Path, spec: FeatureSpec, *, user_key: bool = True) -> ReadResult:
    """The label and feature columns of ``path`` (and the user-key columns, unless
    ``user_key`` is False), named as in the spec.

    The spec's ``[source]`` table says the format and the file's own column names;
    without it the format follows the file suffix and the names are the spec's.
    Errors and row problems name the spec's columns (a :class:`DataFileError`'s
    ``column`` is ``None`` when the file column stands for no spec column); the
    messages keep the file's own names for the partner.
    """
    path = Path(path)
    layout = spec.source
    reader = get_reader(layout.format, file=str(path))
    options = dict(layout.options)
    unknown = sorted(set(options) - reader.options)
    if unknown:
        raise DataFileError(
            f"{path}: [source] options {unknown} are not understood by format "
            f"'{layout.format}' (it reads {sorted(reader.options) or 'no options'})",
            file=str(path),
            problem=DataProblem.BAD_LAYOUT,
        )
    names = list(spec.read_columns if user_key else (spec.label, *spec.column_names))
    file_names = [layout.file_column(c, label=spec.label) for c in names]
    if len(set(file_names)) != len(file_names):
        raise DataFileError(
            f"{path}: the spec's [source] maps two spec columns to one file column",
            file=str(path),
            problem=DataProblem.BAD_LAYOUT,
        )
    to_spec = dict(zip(file_names, names, strict=True))
    try:
        result = reader.read(path, file_names, options)
    except DataFileError as exc:
        # Readers know the file's column names; what may leave is the spec's name.
        exc.column = None if exc.column is None else to_spec.get(exc.column)
        raise
    problems = tuple(
        replace(p, column=to_spec[p.column]) if p.column in to_spec else p for p in result.problems
    )
    return ReadResult(result.table.select(file_names).rename_columns(names), problems)


__all__ = ["FORMATS", "available_formats", "get_reader", "read_spec_columns", "register_format"]
