"""Why a log file cannot be read through the spec: a fixed reason class per failure.

The reason classes are defined here, where files are read, and the wire contract
(:class:`fedctr.privacy.wire.Problem`) declares the same values as what a partner may
send about a bad file; ``tests/privacy/test_wire.py`` keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum

from fedctr.errors import FedctrError


class DataProblem(StrEnum):
    """What is wrong with a data file, as a class: never a value or a row number."""

    UNREADABLE_FILE = "unreadable-file"
    EMPTY_FILE = "empty-file"
    MISSING_COLUMN = "missing-column"
    BAD_HEADER = "bad-header"
    BAD_LABEL = "bad-label"
    NOT_A_NUMBER = "not-a-number"
    INFINITE_VALUE = "infinite-value"
    BAD_EMBEDDING = "bad-embedding"
    BAD_CATEGORY = "bad-category"
    BAD_LAYOUT = "bad-layout"
    MISSING_USER_KEY = "missing-user-key"
    ALL_ROWS_BAD = "all-rows-bad"


class DataFileError(FedctrError, ValueError):
    """A log cannot be used: names the file and, where known, row and column.

    ``str(exc)`` is for the file's owner (their own log and terminal): file path, row,
    column, the offending value and what to do. What may leave a partner is built
    from ``problem``, the file's *name* and ``column`` only, by the wire contract
    (:meth:`fedctr.privacy.wire.ErrorReply.for_data_file`).

    ``column`` is a column of the feature spec (its label or a feature name): readers
    that only know the file's own column names raise with those, and
    :func:`fedctr.models.logs.formats.read_spec_columns` maps them to the spec's names
    (or to ``None`` when the file column stands for no spec column).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        problem: DataProblem,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.problem = DataProblem(problem)
        self.row = row
        self.column = column


__all__ = ["DataFileError", "DataProblem"]
