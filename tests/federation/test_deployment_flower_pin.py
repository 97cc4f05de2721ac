"""The Flower internals fedctr relies on are still there, exactly as written for 1.41.0.

These tests fail loudly on a Flower upgrade. To move to a new Flower: read every
TOUCH_POINT in federation/flower_runtime.py against the new source,
adapt the module, re-run tests/federation/test_deployment_integration.py and
bench/bench_rounds.py, then bump PINNED_FLOWER (and the pyproject pin).
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fedctr.federation import flower_runtime as fr
from fedctr.federation.waits import Waits, waits_from_env, waits_to_env


def test_installed_flower_is_the_pinned_version() -> None:
    assert fr.installed_flower() == fr.PINNED_FLOWER, (
        f"Flower {fr.installed_flower()} is installed but federation/deployment/"
        f"flower_runtime.py was written for {fr.PINNED_FLOWER}: see this file's docstring"
    )
    fr.check_flower_version()


def test_every_touch_point_exists() -> None:
    assert fr.missing_touch_points() == []
    assert fr.fast_path_available()


def test_the_supernode_loop_still_sleeps_the_waits_we_remap() -> None:
    """If these literals change, _RemappedTime maps nothing and rounds get slow again."""
    from flwr.supernode import start_client_internal as sci

    source = inspect.getsource(sci)
    assert f"time.sleep({fr.SUPERNODE_IDLE_SLEEP})" in source
    assert source.count(f"time.sleep({fr.SUPERNODE_REPLY_SLEEP})") == 2
    assert "import time" in source and "from time import" not in source


def test_heartbeat_interval_is_read_from_the_module_globals_we_set() -> None:
    from flwr.supercore import heartbeat
    from flwr.supernode import fleet_http_connection

    assert "HEARTBEAT_DEFAULT_INTERVAL" in inspect.getsource(heartbeat.HeartbeatSender._run)
    assert "heartbeat_interval=HEARTBEAT_DEFAULT_INTERVAL" in inspect.getsource(
        fleet_http_connection
    )


def test_entry_points_take_the_arguments_we_pass() -> None:
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    params = set(inspect.signature(run_clientapp).parameters)
    assert params >= {
        "runtime_api_address",
        "token",
        "insecure",
        "certificates",
        "parent_pid",
        "runtime_dependency_install",
    }
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    assert list(request.supported_task_types) == ["flwr-clientapp"]
    assert "sys.exit" in inspect.getsource(
        __import__("flwr.supercore.exit.exit", fromlist=["flwr_exit"]).flwr_exit
    )


def test_patches_change_only_the_waits_and_only_in_the_patched_process() -> None:
    """Run in a fresh interpreter so this test process keeps stock Flower."""
    code = textwrap.dedent(
        """
        import time
        from fedctr.federation import flower_runtime as fr
        from flwr.supercore import heartbeat
        from flwr.supercore.inflatable import inflatable_utils as iu
        from flwr.supernode import fleet_http_connection, start_client_internal as sci
        from fedctr.federation.waits import Waits
        waits = Waits(idle_poll=0.2, reply_poll=0.01, heartbeat=12.0, pull_backoff=0.07)
        fr.patch_supernode(waits)
        assert sci.time._mapping == {3: 0.2, 0.5: 0.01}
        assert sci.time.monotonic is time.monotonic and time.sleep is not sci.time.sleep
        assert fleet_http_connection.HEARTBEAT_DEFAULT_INTERVAL == 12.0
        assert heartbeat.HEARTBEAT_DEFAULT_INTERVAL == 12.0
        assert iu.pull_objects.__kwdefaults__["initial_backoff"] == 0.07
        t = time.perf_counter(); sci.time.sleep(3); assert time.perf_counter() - t < 1
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_only_a_deployed_serverapp_gets_the_shorter_pull_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flwr.supercore.inflatable import inflatable_utils as iu
    from flwr.superlink.grid.http_grid import HttpGrid

    for fn in (iu.pull_objects, iu.pull_and_inflate_object_from_tree):
        monkeypatch.setattr(fn, "__kwdefaults__", dict(fn.__kwdefaults__))  # restored after
    before = dict(iu.pull_objects.__kwdefaults__)

    assert fr.tune_serverapp_process(object()) is False  # simulation's grid, test fakes
    assert iu.pull_objects.__kwdefaults__ == before
    deployed = HttpGrid.__new__(HttpGrid)
    assert fr.tune_serverapp_process(deployed, Waits(pull_backoff=0.07)) is True
    assert iu.pull_objects.__kwdefaults__["initial_backoff"] == 0.07


def test_waits_are_validated_and_travel_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        Waits(heartbeat=5)
    with pytest.raises(ValueError, match="idle_poll"):
        Waits(idle_poll=0)
    waits = Waits(idle_poll=0.3, task_poll=0.2)
    for key, value in waits_to_env(waits).items():
        monkeypatch.setenv(key, value)

    assert waits_from_env() == waits


class FakeRuntime:
    """Answers AcquireTask like the SuperNode's Runtime API."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def AcquireTask(self, request):  # noqa: N802
        from flwr.proto.runtime_pb2 import AcquireTaskResponse
        from flwr.proto.task_pb2 import Task

        if not self.tokens:
            return AcquireTaskResponse()
        return AcquireTaskResponse(task=Task(task_id=1), token=self.tokens.pop(0))


def test_executor_forks_one_child_per_task_and_reaps_it() -> None:
    executor = fr.ForkingExecutor("127.0.0.1:1", waits=Waits())
    executor._client = FakeRuntime(["t1"])
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    executor._fork = lambda: child.pid  # the "child" is a real short-lived process

    token = executor.acquire()
    pid = executor.launch(token) if token else None

    assert token == "t1" and pid == child.pid and executor.children == {child.pid}
    assert executor.acquire() is None
    child.wait(timeout=30)
    executor._reap()
    assert executor.children == set()


def test_executor_stops_its_task_processes_when_stopped() -> None:
    executor = fr.ForkingExecutor("127.0.0.1:1", waits=Waits())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    executor.children.add(child.pid)

    executor._stop_children(grace=10)

    assert executor.children == set()  # reaped by the executor after SIGTERM
    assert not os.path.exists(f"/proc/{child.pid}")
    child.returncode = -signal.SIGTERM  # already reaped; keep Popen from waiting again


def _installed_app(home: Path, clientapp: str) -> tuple[str, str, str]:
    """A FAB as Flower installs it under FLWR_HOME/apps (only its pyproject.toml)."""
    fab_hash = "ab12cd34" * 8
    folder = home / "apps" / f"fedctr.fedctr.0.1.0.{fab_hash[:8]}"
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "fedctr"
            version = "0.1.0"
            [tool.flwr.app]
            publisher = "fedctr"
            [tool.flwr.app.components]
            serverapp = "fedctr.federation.server_app:app"
            clientapp = "{clientapp}"
            """
        )
    )
    return "fedctr/fedctr", "0.1.0", fab_hash


@pytest.mark.parametrize("clientapp", ["fedctr.federation.client_app:app", "evil.exfiltrate:app"])
def test_tasks_only_ever_run_the_installed_fedctr_client_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clientapp: str
) -> None:
    """A run naming another ClientApp is refused: the platform cannot ship code that
    would run next to the partner's rows."""
    from flwr.clientapp.client_app import LoadClientAppError
    from flwr.supernode.runtime import run_clientapp as runtime

    from fedctr.federation.client_app import app

    monkeypatch.setattr(runtime, "get_load_client_app_fn", runtime.get_load_client_app_fn)
    monkeypatch.setenv("FLWR_HOME", str(tmp_path))
    fab = _installed_app(tmp_path, clientapp)
    fr.pin_client_app()
    load = runtime.get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)

    if clientapp == fr.PINNED_CLIENTAPP:
        assert load(*fab) is app
    else:
        with pytest.raises(LoadClientAppError, match=r"evil\.exfiltrate"):
            load(*fab)
