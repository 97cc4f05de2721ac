"""Written config files parse back to exactly what was written, whatever the text."""

from __future__ import annotations

import tomllib

import pytest

from fedctr.federation.tomlfile import toml_line, toml_sections


def test_sections_round_trip_awkward_values_and_leave_out_none() -> None:
    sections = {
        "partner": {"id": 'shop "a"\\n', "note": "line one\nline two\ttab", "unset": None},
        "privacy": {"epsilon": 8.0, "delta": 1e-05, "enabled": True, "rounds": 4},
        "data": {"columns": ["a", "b"], "sizes": (1, 2)},
    }
    parsed = tomllib.loads(toml_sections(sections))
    assert parsed == {
        "partner": {"id": 'shop "a"\\n', "note": "line one\nline two\ttab"},
        "privacy": {"epsilon": 8.0, "delta": 1e-05, "enabled": True, "rounds": 4},
        "data": {"columns": ["a", "b"], "sizes": [1, 2]},
    }


def test_a_commented_line_keeps_one_key_per_line() -> None:
    line = toml_line("idle_poll_s", 0.25, "seconds between polls")
    assert line.startswith("idle_poll_s = 0.25") and line.endswith("# seconds between polls")
    assert tomllib.loads(line) == {"idle_poll_s": 0.25}
    with pytest.raises(TypeError, match="not a table"):
        toml_line("model", {"name": "lr"})  # loudly, not a silently truncated value
