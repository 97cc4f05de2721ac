"""Launchers leave nothing behind: every child and detached grandchild is stopped."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fedctr.federation.deployment.errors import ProcessFailed
from fedctr.federation.deployment.processes import (
    Supervisor,
    descendants,
    executable_env,
    free_port,
    identity,
    still_running,
)

# A child that starts a grandchild in its own session (as the SuperLink starts
# flower-superexec), prints a routine access-log line and a normal one, then waits.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                     start_new_session=True)
    print('127.0.0.1:1 - "POST /v1/fleet/pull-messages HTTP/1.1" 200', flush=True)
    print("SuperNode ID: 42", flush=True)
    time.sleep(120)
    """
)


def test_stop_all_reaches_detached_grandchildren(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    seen: list[str] = []
    sup.on_line(lambda _m, line: seen.append(line))
    child = sup.start("parent", [sys.executable, "-c", PARENT], executable_env())
    sup.wait(lambda: "SuperNode ID: 42" in seen, timeout=60, what="the child's output")
    sup.wait(lambda: len(descendants(child.pid)) == 1, timeout=60, what="the grandchild")
    family = [identity(child.pid), identity(descendants(child.pid)[0])]

    sup.stop_all(grace_s=10)

    assert not any(still_running(i) for i in family if i is not None)
    log = (tmp_path / "parent.log").read_text()
    assert "pull-messages" not in log  # routine polls are not logged
    assert " | SuperNode ID: 42" in log  # every line gets a timestamp


def test_wait_reports_an_early_exit_with_the_end_of_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    sup.start("dies", [sys.executable, "-c", "print('boom: bad key'); raise SystemExit(3)"], {})

    with pytest.raises(ProcessFailed, match="boom: bad key") as info:
        sup.wait(lambda: False, timeout=60, what="readiness")

    assert info.value.exit_code == 3
    sup.stop_all(grace_s=1)


def test_wait_times_out(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    started = time.monotonic()

    with pytest.raises(ProcessFailed, match="timed out"):
        sup.wait(lambda: False, timeout=0.3, what="nothing")

    assert time.monotonic() - started < 5


def test_identity_tells_a_reused_pid_from_the_original() -> None:
    me = identity(os.getpid())
    assert me is not None and still_running(me)
    assert not still_running((me[0], me[1] + 1))


def test_environment_puts_this_python_first_and_disables_dependency_installs() -> None:
    env = executable_env({"X": "1"})

    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1" and env["X"] == "1"
    assert 0 < free_port() < 65536
