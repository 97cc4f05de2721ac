"""The built wheel, installed in a fresh venv next to packages named ``models`` and
``server``, runs a short federation end to end (publish, score, audit).

This is what a user's site-packages looks like: fedctr installs one name, ``fedctr``,
so another project's ``models`` or ``server`` cannot shadow it, nor it them. The
fresh venv sees the dependencies (torch, flwr, ...) through a ``.pth`` line after
its own site-packages, so only fedctr itself comes from the wheel.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

FOREIGN = {"models": "a user's own models package", "server": "a user's own server package"}


def _run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_wheel_beside_foreign_models_and_server_packages_runs_a_federation(
    tmp_path: Path,
) -> None:
    dist = tmp_path / "dist"
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-q", "-w", dist, REPO, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("fedctr-*.whl")

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    purelib = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()
    )
    for name, text in FOREIGN.items():
        (purelib / name).mkdir()
        (purelib / name / "__init__.py").write_text(f"WHO = {text!r}\n")
    # Dependencies from this venv, after the fresh site-packages (so fedctr is the wheel's).
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "zz_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    installed = _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", wheel, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]

    probe = _run(
        python, "-c",
        "import fedctr, fedctr.models, fedctr.server.registry, models, server; "
        "print(fedctr.__file__); print(fedctr.models.__file__); print(models.WHO, '|', server.WHO)",
        cwd=tmp_path,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    lines = probe.stdout.splitlines()
    assert all(str(purelib) in line for line in lines[:2]), lines  # from the wheel, not the repo
    assert lines[2] == f"{FOREIGN['models']} | {FOREIGN['server']}"

    demo = _run(
        venv / "bin" / "fedctr", "demo", "--workdir", tmp_path / "demo", "--rounds", "1",
        "--model", "lr", cwd=tmp_path,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "PASS" in demo.stdout + demo.stderr
