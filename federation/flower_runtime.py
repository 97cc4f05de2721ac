"""Everything fedctr does with Flower 1.41 internals, in one place, pinned to 1.41.0.

Stock Flower 1.41 starts a fresh ``flwr-clientapp`` process for every message
(re-importing torch and Opacus, ~3 s each) and waits on fixed sleeps between
polls. This module removes both costs without changing what runs or what
crosses the wire:

- :func:`run_forking_executor` replaces ``flower-superexec`` next to a SuperNode
  started with ``--isolation process``. It imports torch, Opacus, Flower and the
  partner's installed fedctr once, then asks the SuperNode's Runtime API for
  tasks and ``fork()``s one child per task; the child runs Flower's unmodified
  ClientApp entry point (``run_clientapp``) with the task's token and exits.
- :func:`run_patched_supernode` runs Flower's ``flower-supernode`` entry point
  after shortening its fixed waits (idle poll 3 s, reply poll 0.5 s, heartbeat
  30 s, object-pull backoff 1 s) to configurable values.
- :func:`shorten_object_pull_backoff` does the same for the object-pull backoff
  in any process (the ServerApp calls it through :mod:`fedctr.federation.grid`).
- :func:`pin_client_app` makes every task run the ClientApp of the fedctr
  installed on the partner's machine and refuse runs naming another app (stock
  Flower imports the ClientApp from the bundle the run brings along).

Each touch point is listed in :data:`TOUCH_POINTS`; ``tests/federation/
test_deployment_flower_pin.py`` checks every one of them against the installed
Flower and fails loudly on an upgrade. If the installed version is not
:data:`PINNED_FLOWER`, :func:`fast_path_available` is False and the launchers fall
back to stock Flower processes (slower, still correct).

Run as ``python -m fedctr.federation.flower_runtime {supernode,executor} ...``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from fedctr.errors import FedctrError
from fedctr.federation.waits import Waits, waits_from_env


class FlowerVersionError(FedctrError):
    """The installed Flower is not the version the pinned internals were written for."""


logger = logging.getLogger(__name__)

PINNED_FLOWER = "1.41.0"

# (module, attribute, what we rely on) for every internal name used below.
TOUCH_POINTS: tuple[tuple[str, str, str], ...] = (
    ("flwr.supernode.start_client_internal", "time", "module global used for its sleeps"),
    ("flwr.supernode.start_client_internal", "start_client_internal", "SuperNode main loop"),
    ("flwr.supernode.fleet_http_connection", "HEARTBEAT_DEFAULT_INTERVAL", "heartbeat (s)"),
    ("flwr.supercore.heartbeat", "HEARTBEAT_DEFAULT_INTERVAL", "heartbeat sender's period"),
    ("flwr.supercore.inflatable.inflatable_utils", "pull_objects", "kw-only backoff"),
    (
        "flwr.supercore.inflatable.inflatable_utils",
        "pull_and_inflate_object_from_tree",
        "kw-only backoff",
    ),
    ("flwr.supernode.cli.flower_supernode", "flower_supernode", "SuperNode entry point"),
    ("flwr.superlink.grid.http_grid", "HttpGrid", "the deployed ServerApp's grid"),
    ("flwr.supernode.runtime.run_clientapp", "run_clientapp", "ClientApp entry point"),
    ("flwr.supernode.runtime.run_clientapp", "get_load_client_app_fn", "app loader we pin"),
    ("flwr.common.config", "get_project_dir", "where a FAB is installed"),
    ("flwr.common.config", "get_project_config", "a FAB's pyproject.toml"),
    ("flwr.clientapp.client_app", "LoadClientAppError", "refusal of another app"),
    ("flwr.supercore.runtime", "RuntimeHttpClient", "Runtime API client (AcquireTask)"),
    ("flwr.supercore.interceptors", "RuntimeVersionHttpInterceptor", "version header"),
    ("flwr.supercore.retry", "make_simple_http_retry_invoker", "HTTP retries"),
    ("flwr.proto.runtime_pb2", "AcquireTaskRequest", "task acquisition request"),
    ("flwr.supercore.constant", "TaskType", "task type names"),
    ("flwr.supercore.exit.exit_handler", "registered_exit_handlers", "parent's handlers"),
)
# Fixed waits in 1.41's SuperNode loop (start_client_internal.py) we map to our values.
SUPERNODE_IDLE_SLEEP = 3
SUPERNODE_REPLY_SLEEP = 0.5
PULL_BACKOFF_KEYS = ("initial_backoff", "backoff_cap")


def installed_flower() -> str:
    from importlib.metadata import version

    return version("flwr")


def check_flower_version() -> None:
    """Raise :class:`FlowerVersionError` unless Flower is the pinned version."""
    found = installed_flower()
    if found != PINNED_FLOWER:
        raise FlowerVersionError(
            f"fedctr.federation.flower_runtime was written for flwr=={PINNED_FLOWER}, "
            f"found {found}; re-check every TOUCH_POINT against the new source, then bump "
            "PINNED_FLOWER (tests/federation/test_deployment_flower_pin.py shows what broke)"
        )


def missing_touch_points() -> list[str]:
    """Touch points absent from the installed Flower (empty when all are present)."""
    missing = []
    for module_name, attr, why in TOUCH_POINTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(f"{module_name} (module; {why})")
            continue
        if not hasattr(module, attr):
            missing.append(f"{module_name}.{attr} ({why})")
    from flwr.supercore.inflatable import inflatable_utils

    for fn in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        if not all(k in (fn.__kwdefaults__ or {}) for k in PULL_BACKOFF_KEYS):
            missing.append(f"{fn.__qualname__} keyword-only {PULL_BACKOFF_KEYS}")
    return missing


def fast_path_available() -> bool:
    """True when the pinned Flower is installed and every touch point is present."""
    try:
        check_flower_version()
    except FlowerVersionError as exc:
        logger.warning("%s; using stock Flower processes", exc)
        return False
    missing = missing_touch_points()
    if missing:
        logger.warning("Flower internals changed (%s); using stock processes", missing)
        return False
    return True


# ---- patches ----------------------------------------------------------------
class _RemappedTime(SimpleNamespace):
    """Stands in for the ``time`` module inside one Flower module: same functions,
    but the two fixed sleeps of the SuperNode loop are replaced by ours."""

    def __init__(self, mapping: dict[float, float]) -> None:
        real = time
        super().__init__(**{n: getattr(real, n) for n in dir(real) if not n.startswith("__")})
        self._mapping = dict(mapping)

        def sleep(seconds: float) -> None:
            real.sleep(self._mapping.get(seconds, seconds))

        self.sleep = sleep


def shorten_object_pull_backoff(waits: Waits) -> None:
    """Object pulls retry after ``waits.pull_backoff`` (not 1 s), capped lower."""
    from flwr.supercore.inflatable import inflatable_utils

    for fn in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        defaults = dict(fn.__kwdefaults__ or {})
        defaults["initial_backoff"] = waits.pull_backoff
        defaults["backoff_cap"] = waits.pull_backoff_cap
        fn.__kwdefaults__ = defaults


def tune_serverapp_process(grid: object, waits: Waits | None = None) -> bool:
    """In a deployed ServerApp (``grid`` is Flower's HTTP grid): shorten the
    reply-object pull backoff of this process.

    Returns False (and changes nothing) under simulation, or when the installed
    Flower is not the pinned one; the ServerApp then runs with Flower's own backoff.
    """
    try:
        check_flower_version()
    except FlowerVersionError:
        return False
    from flwr.superlink.grid.http_grid import HttpGrid

    if not isinstance(grid, HttpGrid):
        return False
    shorten_object_pull_backoff(waits or waits_from_env())
    return True


def patch_supernode(waits: Waits) -> None:
    """Shorten the SuperNode's fixed sleeps and heartbeat in this process."""
    from flwr.supercore import heartbeat
    from flwr.supernode import fleet_http_connection, start_client_internal

    start_client_internal.time = _RemappedTime(  # type: ignore[attr-defined]
        {SUPERNODE_IDLE_SLEEP: waits.idle_poll, SUPERNODE_REPLY_SLEEP: waits.reply_poll}
    )
    # The interval announced to the SuperLink and the sender's period must agree.
    fleet_http_connection.HEARTBEAT_DEFAULT_INTERVAL = waits.heartbeat  # type: ignore[attr-defined]
    heartbeat.HEARTBEAT_DEFAULT_INTERVAL = waits.heartbeat  # type: ignore[attr-defined]
    shorten_object_pull_backoff(waits)


def run_patched_supernode(argv: Sequence[str], waits: Waits) -> None:
    """Flower's ``flower-supernode`` with our waits; ``argv`` are its own flags."""
    check_flower_version()
    patch_supernode(waits)
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


# ---- the forking executor ---------------------------------------------------
PRELOAD_MODULES = (
    "torch",
    "opacus",
    "numpy",
    "pyarrow.parquet",
    "pyarrow.csv",
    "flwr.cli.install",
    "flwr.clientapp.utils",
    "flwr.supernode.runtime.run_clientapp",
    "fedctr.federation.client_app",
    "fedctr.clients.node",
    "fedctr.clients.trainer",
    "fedctr.privacy.dpsgd",
)


def preload(modules: Sequence[str] = PRELOAD_MODULES) -> None:
    """Import (never run) what every task needs, so each forked child starts warm.

    The parent must stay single-threaded and compute nothing: a thread pool or
    OpenMP state created before ``fork()`` would be broken in the children.
    """
    for name in modules:
        importlib.import_module(name)


PINNED_CLIENTAPP = "fedctr.federation.client_app:app"


def pin_client_app() -> None:
    """Every task runs the ClientApp of the fedctr installed here, never code from the run.

    Stock Flower imports the ClientApp from the app bundle (FAB) the SuperLink sends,
    i.e. code chosen by whoever submitted the run would execute next to the partner's
    raw rows. Here the loader checks that the run names fedctr's ClientApp and returns
    the preloaded one; any other app is refused (the platform sees a failed reply).
    """
    from flwr.clientapp.client_app import LoadClientAppError
    from flwr.common.config import get_project_config, get_project_dir
    from flwr.supernode.runtime import run_clientapp as runtime

    from fedctr.federation.client_app import app as fedctr_app

    def get_load_client_app_fn(*_args: object, **_kwargs: object) -> Callable[..., object]:
        def load(fab_id: str, fab_version: str, fab_hash: str) -> object:
            config = get_project_config(get_project_dir(fab_id, fab_version, fab_hash))
            wanted = config["tool"]["flwr"]["app"]["components"]["clientapp"]
            if wanted != PINNED_CLIENTAPP:
                raise LoadClientAppError(
                    f"this node runs only {PINNED_CLIENTAPP} (installed fedctr); "
                    f"the run asked for {wanted!r}"
                )
            return fedctr_app

        return load

    runtime.get_load_client_app_fn = get_load_client_app_fn  # type: ignore[assignment]


def _child_main(runtime_api_address: str, token: str, parent_pid: int) -> None:
    """In the forked child: become a plain ``flwr-clientapp`` for one task, then exit."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        atexit._clear()  # the parent's exit handlers are not the child's
        from flwr.supercore.exit import exit_handler

        exit_handler.registered_exit_handlers.clear()
        from flwr.supernode.runtime.run_clientapp import run_clientapp

        run_clientapp(
            runtime_api_address=runtime_api_address,
            token=token,
            insecure=True,
            certificates=None,
            parent_pid=parent_pid,
            runtime_dependency_install=False,
        )
        code = 0
    except SystemExit as exc:  # flwr_exit() ends every task with sys.exit
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logger.exception("ClientApp task crashed")
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkingExecutor:
    """Acquire ClientApp tasks from a SuperNode and run each in a forked child."""

    def __init__(
        self,
        runtime_api_address: str,
        *,
        waits: Waits,
        fork: Callable[[], int] = os.fork,
    ) -> None:
        self.runtime_api_address = runtime_api_address
        self.waits = waits
        self._fork = fork
        self.children: set[int] = set()
        self._stopping = False
        self._client: Any = None

    def stop(self, *_: object) -> None:
        self._stopping = True

    def _connect(self) -> Any:
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        return RuntimeHttpClient.from_server_address(
            server_address=self.runtime_api_address,
            insecure=True,  # the SuperNode's Runtime API listens on loopback only
            root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.children.discard(pid)
                continue
            if done:
                self.children.discard(pid)
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    logger.warning("task process %d exited with %d", pid, code)

    def acquire(self) -> str | None:
        """One AcquireTask call: the task's token, or None if there is none."""
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        res = self._client.AcquireTask(
            AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        )
        if res.HasField("task") and res.token:
            return str(res.token)
        return None

    def launch(self, token: str) -> int:
        parent = os.getpid()
        pid = self._fork()
        if pid == 0:
            _child_main(self.runtime_api_address, token, parent)
        self.children.add(pid)
        return pid

    def serve(self, *, parent_pid: int | None = None) -> int:
        """Poll for tasks until stopped (signal) or ``parent_pid`` goes away."""
        self._client = self._connect()
        try:
            while not self._stopping:
                self._reap()
                if parent_pid is not None and os.getppid() != parent_pid:
                    logger.warning("supervisor %d is gone; executor stops", parent_pid)
                    break
                token = self.acquire()
                if token is not None:
                    pid = self.launch(token)
                    logger.info("task started in process %d", pid)
                    continue  # there may be more queued
                time.sleep(self.waits.task_poll)
        finally:
            self._client.close()
            self._stop_children()
        return 0

    def _stop_children(self, grace: float = 10.0) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def run_forking_executor(
    runtime_api_address: str, waits: Waits, *, parent_pid: int | None = None
) -> int:
    check_flower_version()
    started = time.monotonic()
    # Children inherit this: a task may start before the SuperNode has stored all of
    # the message's objects, and Flower's first retry would come only after 1 s. The
    # SuperNode is local, so asking it again every 0.1 s at most costs nothing.
    shorten_object_pull_backoff(replace(waits, pull_backoff=0.02, pull_backoff_cap=0.1))
    preload()
    pin_client_app()
    logger.info(
        "fedctr executor ready in %.1fs (torch, opacus, fedctr preloaded); tasks from %s",
        time.monotonic() - started,
        runtime_api_address,
    )
    executor = ForkingExecutor(runtime_api_address, waits=waits)
    signal.signal(signal.SIGTERM, executor.stop)
    signal.signal(signal.SIGINT, executor.stop)
    return executor.serve(parent_pid=parent_pid)


# ---- command line -----------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m fedctr.federation.flower_runtime")
    parser.add_argument("role", choices=("supernode", "executor"))
    parser.add_argument("--runtime-api-address", help="executor: the SuperNode's Runtime API")
    parser.add_argument("--parent-pid", type=int, default=None)
    if argv[:1] == ["supernode"]:  # Flower configures its own logging
        run_patched_supernode(argv[1:], waits_from_env())
        return 0
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("opacus", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.runtime_api_address:
        parser.error("executor needs --runtime-api-address")
    return run_forking_executor(
        args.runtime_api_address, waits_from_env(), parent_pid=args.parent_pid
    )


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "PINNED_FLOWER",
    "TOUCH_POINTS",
    "ForkingExecutor",
    "check_flower_version",
    "fast_path_available",
    "missing_touch_points",
    "patch_supernode",
    "pin_client_app",
    "run_forking_executor",
    "run_patched_supernode",
    "shorten_object_pull_backoff",
    "tune_serverapp_process",
]
