"""A replaced file is the old one or the new one, never half, and leaves no debris."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedctr.durable import replace_file


def test_replace_file_swaps_contents_and_syncs_file_then_directory(
    tmp_path: Path, fsync_log: list[str]
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    replace_file(target, b"new")

    assert target.read_bytes() == b"new"
    assert fsync_log == ["file", "dir"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_replace_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "LATEST"
    target.write_bytes(b"v0001\n")

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        replace_file(target, b"v0002\n")

    assert target.read_bytes() == b"v0001\n"
    assert [p.name for p in tmp_path.iterdir()] == ["LATEST"]


def test_the_mode_is_explicit_not_the_temp_files_0600(tmp_path: Path) -> None:
    shared, private = tmp_path / "LATEST", tmp_path / "privacy-state.json"
    replace_file(shared, b"v0001\n")  # read by a scoring service running as another user
    replace_file(private, b"{}", mode=0o600)
    assert shared.stat().st_mode & 0o777 == 0o644
    assert private.stat().st_mode & 0o777 == 0o600
