"""Where a partner's files keep the spec's columns: the optional ``[source]`` table.

A partner whose logs differ from the federation's (another file format, another
label name, other column names) joins by copying the federation's spec and adding::

    [source]
    format = "csv"            # auto (by suffix) | csv | tsv | parquet | arff | libsvm
    label = "clicked"         # the file's name for the spec's label column
    [source.columns]          # spec column = the file's column
    ad_id = "creative"

Other keys of ``[source]`` are options of the format's reader (``fedctr.models.logs.formats``).
The layout is local to the partner, so it is not part of the spec hash: partners
with different files still train, and are scored, with one spec. Only the shape is
checked here; ``fedctr.models.logs.formats`` checks the format name and its options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fedctr.models.errors import FeatureSpecError

OptionValue = str | int | float | bool


@dataclass(frozen=True)
class SourceLayout:
    """The file format and the file's names for the spec's columns (default: the same)."""

    format: str = "auto"
    label: str | None = None
    columns: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, OptionValue], ...] = ()

    def file_column(self, spec_column: str, *, label: str) -> str:
        """The file's name of one spec column (the label included)."""
        if spec_column == label and self.label is not None:
            return self.label
        return dict(self.columns).get(spec_column, spec_column)

    def option(self, name: str, default: OptionValue | None = None) -> OptionValue | None:
        return dict(self.options).get(name, default)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, **dict(self.options)}
        if self.label is not None:
            out["label"] = self.label
        if self.columns:
            out["columns"] = dict(self.columns)
        return out

    @classmethod
    def from_dict(cls, raw: Any, *, spec_columns: tuple[str, ...]) -> SourceLayout:
        """Validate an untrusted ``[source]`` table against the spec's column names."""
        if not isinstance(raw, dict):
            raise FeatureSpecError("[source] must be a table")
        data = dict(raw)
        fmt = data.pop("format", "auto")
        if not isinstance(fmt, str) or not fmt:
            raise FeatureSpecError(f"[source] format must be a non-empty string, got {fmt!r}")
        label = data.pop("label", None)
        if label is not None and (not isinstance(label, str) or not label):
            raise FeatureSpecError(f"[source] label must be a column name, got {label!r}")
        columns = data.pop("columns", {})
        if not isinstance(columns, dict):
            raise FeatureSpecError("[source.columns] must be a table of spec column = file column")
        unknown = sorted(set(columns) - set(spec_columns))
        if unknown:
            raise FeatureSpecError(
                f"[source.columns] names {unknown}, which are not feature columns of the spec"
            )
        bad = sorted(k for k, v in columns.items() if not isinstance(v, str) or not v)
        if bad:
            raise FeatureSpecError(f"[source.columns] {bad}: the file column must be a name")
        for key, value in data.items():
            if isinstance(value, dict | list) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise FeatureSpecError(f"[source] option '{key}' must be a finite scalar")
        return cls(
            format=fmt,
            label=label,
            columns=tuple(sorted(columns.items())),
            options=tuple(sorted(data.items())),
        )


__all__ = ["SourceLayout"]
