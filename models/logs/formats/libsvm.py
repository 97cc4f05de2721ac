"""libSVM-style one-hot logs: ``label idx:1 idx:1 ...``, one token per field, in field order.

The file has no header, so its columns are named by position: ``label`` is the first
token and ``"1"``, ``"2"``, ... the first, second, ... feature token. The value of a
feature column is the token's index (a string), which the spec then hashes like any
categorical value: an index stands for one (field, value) pair, so partners must share
the index encoding (the same ``featindex``) for their columns to mean the same thing.

Options: ``features_per_row`` (required): how many feature tokens every line holds. A
line with another count, or a token that is not ``index:1``, is reported as a bad row
(skipped or fatal by the partner's policy): with one token per field, a missing token
would shift every later field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.formats.base import FormatReader, ReadResult, RowProblem
from fedctr.models.logs.formats.registry import register_format
from fedctr.models.source_layout import OptionValue

LABEL = "label"
_ONE = ("1", "1.0")


def _positions(path: Path, columns: list[str], width: int) -> list[int]:
    out = []
    for name in columns:
        if name == LABEL:
            continue
        if not name.isdigit() or not 1 <= int(name) <= width:
            raise DataFileError(
                f"{path}: a libsvm file's columns are 'label' and the token positions "
                f"'1'..'{width}'; the spec's [source] asks for '{name}'",
                file=str(path),
                problem=DataProblem.BAD_LAYOUT,
                column=name,
            )
        out.append(int(name))
    return out


@register_format("libsvm")
class LibSvm(FormatReader):
    options = frozenset({"features_per_row"})

    def read(
        self, path: Path, columns: list[str], options: Mapping[str, OptionValue]
    ) -> ReadResult:
        width = options.get("features_per_row")
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise DataFileError(
                f"{path}: the libsvm format needs [source] features_per_row = <positive int> "
                f"(tokens per line after the label), got {width!r}",
                file=str(path),
                problem=DataProblem.BAD_LAYOUT,
            )
        positions = _positions(path, columns, width)
        # A short or long line shifts every field: reported against the first column read.
        line_column = str(positions[0]) if positions else LABEL
        labels: list[str | None] = []
        values: dict[int, list[str | None]] = {p: [] for p in positions}
        problems: list[RowProblem] = []
        try:
            with path.open(encoding="utf-8") as fh:
                for row, line in enumerate(fh):
                    tokens = line.split()
                    labels.append(tokens[0] if tokens else None)
                    feats = tokens[1:]
                    if len(feats) != width:
                        problems.append(
                            RowProblem(
                                row,
                                line_column,
                                f"expected {width} index:1 tokens, got {len(feats)}",
                            )
                        )
                        for p in positions:
                            values[p].append(None)
                        continue
                    for p in positions:
                        index, sep, value = feats[p - 1].partition(":")
                        if sep and index.isdigit() and value in _ONE:
                            values[p].append(index)
                        else:
                            values[p].append(None)
                            problems.append(
                                RowProblem(row, str(p), f"token {feats[p - 1]!r} is not index:1")
                            )
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(
                f"cannot read {path} as libsvm: {exc}",
                file=str(path),
                problem=DataProblem.UNREADABLE_FILE,
            ) from exc
        data = {LABEL: pa.array(labels, pa.string())}
        data.update({str(p): pa.array(v, pa.string()) for p, v in values.items()})
        return ReadResult(pa.table(data), tuple(problems))


__all__ = ["LABEL", "LibSvm"]
