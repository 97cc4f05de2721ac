"""Errors of the partner node."""

from __future__ import annotations

from pathlib import Path

from fedctr.errors import FedctrError
from privacy.wire import ContractViolation, ErrorCode, ErrorReply, Problem

# The reason classes a data file error may carry (``bad-data`` replies).
DATA_PROBLEMS: frozenset[Problem] = frozenset(
    {
        Problem.UNREADABLE_FILE,
        Problem.EMPTY_FILE,
        Problem.MISSING_COLUMN,
        Problem.BAD_HEADER,
        Problem.BAD_LABEL,
        Problem.NOT_A_NUMBER,
        Problem.INFINITE_VALUE,
        Problem.BAD_EMBEDDING,
        Problem.BAD_CATEGORY,
        Problem.BAD_LAYOUT,
        Problem.ALL_ROWS_BAD,
    }
)


class PartnerError(FedctrError):
    """Base class of partner-node errors."""


class DataFileError(PartnerError, ValueError):
    """A conversion log cannot be used: names the file and, where known, row and column.

    Two audiences. ``str(exc)`` is for the partner's own log and terminal: file path,
    row, column, the offending value and what to do. :meth:`public` is what may leave
    the partner (the wire contract's error reply): the reason class ``problem``, the
    file's *name* and the spec column, never a row number or a cell value.

    ``column`` is a column of the feature spec (its label or a feature name): readers
    that only know the file's own column names raise with those, and
    :func:`clients.formats.read_spec_columns` maps them to the spec's names (or to
    ``None`` when the file column stands for no spec column).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        problem: Problem,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        problem = Problem(problem)
        if problem not in DATA_PROBLEMS:
            raise ValueError(f"{problem!r} is not a data-file reason class")
        super().__init__(message)
        self.file = file
        self.problem = problem
        self.row = row
        self.column = column

    def public(self) -> ErrorReply:
        """The ``bad-data`` error reply: reason class, file name, spec column; nothing else.

        A file name or column that the contract's name pattern refuses is left out
        rather than failing the reply.
        """
        return ErrorReply(
            code=ErrorCode.BAD_DATA,
            problem=self.problem,
            file=_declarable("file", Path(self.file).name),
            column=_declarable("column", self.column),
        )


def _declarable(field: str, value: str | None) -> str | None:
    """``value`` if an error reply may carry it in ``field``, else None."""
    if value is None:
        return None
    try:
        ErrorReply(code=ErrorCode.BAD_DATA, problem=Problem.INTERNAL, **{field: value})
    except ContractViolation:
        return None
    return value


class PartnerConfigError(PartnerError, ValueError):
    """A partner node config file is missing, malformed or inconsistent."""


__all__ = ["DATA_PROBLEMS", "DataFileError", "PartnerConfigError", "PartnerError"]
