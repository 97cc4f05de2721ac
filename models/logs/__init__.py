"""Partner logs read through the feature spec: one reader for the partner's training
log and the platform's own evaluation file, so both parse and encode rows alike.

``formats/`` holds one reader per file format (CSV, Parquet, LibSVM, ARFF) behind
one registry; :mod:`~fedctr.models.logs.reader` validates, encodes and reports bad
rows; :mod:`~fedctr.models.logs.errors` names what can be wrong with a file.
"""

from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.reader import (
    BadRowPolicy,
    EncodedData,
    LoadReport,
    RowIssue,
    read_partner_log,
)

__all__ = [
    "BadRowPolicy",
    "DataFileError",
    "DataProblem",
    "EncodedData",
    "LoadReport",
    "RowIssue",
    "read_partner_log",
]
