"""File formats a partner's logs may come in; the spec's ``[source]`` table picks one."""

from fedctr.models.logs.formats import arff, libsvm, tabular  # noqa: F401  (register the readers)
from fedctr.models.logs.formats.base import FormatReader, ReadResult, RowProblem
from fedctr.models.logs.formats.registry import (
    available_formats,
    get_reader,
    iter_spec_columns,
    read_spec_columns,
    register_format,
)

__all__ = [
    "FormatReader",
    "ReadResult",
    "RowProblem",
    "available_formats",
    "get_reader",
    "iter_spec_columns",
    "read_spec_columns",
    "register_format",
]
