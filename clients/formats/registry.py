"""Registry of file-format readers, keyed by the ``format`` of a spec's ``[source]``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clients.errors import DataFileError
from clients.formats.base import FormatReader, ReadResult
from models import FeatureSpec

_READERS: dict[str, type[FormatReader]] = {}


def register_format(name: str) -> Callable[[type[FormatReader]], type[FormatReader]]:
    """Class decorator registering a reader under ``name``; duplicates are an error."""

    def wrap(cls: type[FormatReader]) -> type[FormatReader]:
        if name in _READERS:
            raise ValueError(f"file format '{name}' is already registered")
        cls.name = name
        _READERS[name] = cls
        return cls

    return wrap


def available_formats() -> tuple[str, ...]:
    return tuple(sorted(_READERS))


def get_reader(name: str, *, file: str) -> FormatReader:
    """A fresh reader for format ``name``; ``file`` is named in the error if it is unknown."""
    try:
        return _READERS[name]()
    except KeyError:
        raise DataFileError(
            f"{file}: the feature spec's [source] format '{name}' is unknown; "
            f"choose one of {available_formats()}",
            file=file,
        ) from None


def read_spec_columns(path: str | Path, spec: FeatureSpec) -> ReadResult:
    """The label and feature columns of ``path``, named as in the spec.

    The spec's ``[source]`` table says the format and the file's own column names;
    without it the format follows the file suffix and the names are the spec's.
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
        )
    names = [spec.label, *spec.column_names]
    file_names = [layout.file_column(c, label=spec.label) for c in names]
    if len(set(file_names)) != len(file_names):
        raise DataFileError(
            f"{path}: the spec's [source] maps two spec columns to one file column",
            file=str(path),
        )
    result = reader.read(path, file_names, options)
    return ReadResult(result.table.select(file_names).rename_columns(names), result.problems)


__all__ = ["available_formats", "get_reader", "read_spec_columns", "register_format"]
