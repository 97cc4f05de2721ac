"""The layout is a contract: one installed name, import layers, no cycles.

The import layers live in ``.importlinter`` (import-linter). The folders stay at the
top of the repository and install as ``fedctr.<folder>`` (pyproject's
``package-dir``); import-linter walks one package directory, so the check runs on a
tree of symlinks in that installed shape.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("models", "privacy", "clients", "server", "federation")


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _installed_shape(root: Path) -> Path:
    """``root/fedctr`` laid out as the wheel installs it (symlinks into the repo)."""
    package = root / "fedctr"
    package.mkdir()
    for name, folder in _setuptools()["package-dir"].items():
        if name == "fedctr":
            for module in (REPO / folder).glob("*.py"):
                (package / module.name).symlink_to(module)
        else:
            (package / name.removeprefix("fedctr.")).symlink_to(REPO / folder)
    return root


def test_import_layers_and_acyclicity_hold(tmp_path: Path) -> None:
    """federation > clients | server > privacy > models > core, and no cycles anywhere."""
    root = _installed_shape(tmp_path)
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), str(REPO / ".importlinter"), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_package_folder_is_installed() -> None:
    """A new folder with an ``__init__.py`` must be listed, or the wheel would lack it."""
    mapping = _setuptools()["package-dir"]
    on_disk = set()
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            on_disk.add(".".join((name, *relative.parts)))
    assert set(_setuptools()["packages"]) == on_disk


def test_no_module_imports_a_bare_top_level_name() -> None:
    """``import models`` would work from the repo root and nowhere else: always ``fedctr.``."""
    offenders = []
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts or ".git" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in TOP_LEVEL
            ]
    assert not offenders
