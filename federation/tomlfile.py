"""Config files written for people to read: one ``key = value  # why`` per line.

``tomli_w`` does the quoting and escaping (a hand-rolled writer got newlines and
control characters wrong); this module only keeps the layout: sections in order,
lists inline, optional comments, ``None`` left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal; lists and tuples inline on one line."""
    if isinstance(value, Mapping):  # would become a [table], not a value
        raise TypeError(f"a config line holds a value, not a table: {value!r}")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def toml_line(key: str, value: Any, comment: str = "") -> str:
    text = f"{key} = {toml_value(value)}"
    return f"{text:<40} # {comment}" if comment else text


def toml_sections(sections: Mapping[str, Mapping[str, object]]) -> str:
    """``[name]`` tables in the given order; keys whose value is ``None`` are omitted."""
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [toml_line(k, v) for k, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


__all__ = ["toml_line", "toml_sections", "toml_value"]
