"""Start, watch and stop Flower's processes so that nothing outlives its launcher.

The launcher (``fedctr platform start`` / ``fedctr partner start``) runs its Flower
processes as children in its own process group, each with its log file (a pump
thread copies the output and drops the SuperLink's per-poll access-log lines).
Stopping sends SIGTERM to every child and to every process they started (found
in ``/proc`` before stopping, since Flower detaches some of them into their own
session), waits, then SIGKILLs whatever is left. A launcher stopped by SIGTERM to
its process group therefore leaves no orphans. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from fedctr.durable import replace_file
from fedctr.federation.deployment.errors import ProcessFailed

logger = logging.getLogger(__name__)

# Access-log lines of routine polls (every 0.1 s per node) would fill the log.
QUIET = re.compile(
    r'"POST /v1/(fleet/(pull-messages|send-node-heartbeat)|runtime/(pull-messages|'
    r"acquire-task|get-nodes|send-task-heartbeat)|control/(list-runs|list-nodes))"
    r'[^"]*" 200'
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children first), from ``/proc``."""
    tree = _children_map()
    out: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop(0)
        out.append(child)
        stack.extend(tree.get(child, []))
    return out


def _stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def is_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


Identity = tuple[int, int]
"""(pid, start time in clock ticks): a pid alone may be reused by another process."""


def identity(pid: int) -> Identity | None:
    fields = _stat(pid)
    return None if fields is None else (pid, int(fields[19]))


def still_running(ident: Identity) -> bool:
    """True if the very process ``ident`` names is alive (not a reused pid)."""
    fields = _stat(ident[0])
    return fields is not None and fields[0] != "Z" and int(fields[19]) == ident[1]


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class Managed:
    """One child process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    lines: list[str] = field(default_factory=list)  # recent output, for error messages
    _pump: threading.Thread | None = None
    _settled: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])

    def settle(self, timeout_s: float = 1.0) -> None:
        """After the exit: let the log pump copy the last lines (until EOF). Waits once:
        a grandchild holding the pipe open must not make every caller wait again."""
        if self._pump is not None and not self._settled:
            self._pump.join(timeout_s)
            self._settled = True

    def failure(self, doing: str = "", *, lines: int = 15) -> ProcessFailed:
        """The error for this exited child, ending with the end of its log."""
        self.settle()
        code = self.exit_code()
        during = f" while {doing}" if doing else ""
        return ProcessFailed(
            f"{self.name} exited with code {code}{during}; its log ({self.log_path}) "
            f"ends with:\n{self.tail(lines)}",
            exit_code=code,
        )


class Supervisor:
    """Children of this process, each logged to ``log_dir/<name>.log``."""

    def __init__(self, log_dir: Path, *, keep_lines: int = 200) -> None:
        self.log_dir = log_dir
        self.keep_lines = keep_lines
        self.children: list[Managed] = []
        self._watchers: list[Callable[[Managed, str], None]] = []

    def on_line(self, watcher: Callable[[Managed, str], None]) -> None:
        """Call ``watcher(process, line)`` for every output line (from pump threads)."""
        self._watchers.append(watcher)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        managed = Managed(name, popen, log_path)
        managed._pump = threading.Thread(
            target=self._pump, args=(managed,), name=f"log-{name}", daemon=True
        )
        managed._pump.start()
        self.children.append(managed)
        logger.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
        return managed

    def _pump(self, managed: Managed) -> None:
        stream: IO[bytes] | None = managed.popen.stdout
        if stream is None:
            return
        with managed.log_path.open("a", encoding="utf-8") as log:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if QUIET.search(line):
                    continue
                # Flower's console lines carry no time; every line in our logs does.
                log.write(f"{datetime.now():%H:%M:%S.%f}"[:-3] + f" | {line}\n")
                log.flush()
                managed.lines.append(line)
                del managed.lines[: -self.keep_lines]
                for watcher in self._watchers:
                    watcher(managed, line)

    def forget(self, managed: Managed) -> None:
        """Stop tracking a child that has exited (before starting its replacement)."""
        if managed.exit_code() is None:
            raise ValueError(f"{managed.name} is still running")
        managed.settle(2.0)
        self.children.remove(managed)

    def first_exited(self) -> Managed | None:
        return next((m for m in self.children if m.exit_code() is not None), None)

    def wait(
        self,
        until: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        poll_s: float = 0.05,
        stop: threading.Event | None = None,
    ) -> None:
        """Poll ``until()``; raise ProcessFailed if a child exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not until():
            dead = self.first_exited()
            if dead is not None:
                raise dead.failure(f"waiting for {what}")
            if stop is not None and stop.is_set():
                raise ProcessFailed(f"stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(poll_s)

    def stop_all(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM every child and descendant, wait ``grace_s``, SIGKILL the rest."""
        roots = [m.pid for m in self.children if m.exit_code() is None]
        tree = [pid for root in roots for pid in descendants(root)]
        everyone = [i for pid in dict.fromkeys(roots + tree) if (i := identity(pid)) is not None]
        _signal_all([pid for pid, _ in everyone], signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            for m in self.children:
                m.popen.poll()
            if not any(still_running(i) for i in everyone):
                break
            time.sleep(0.05)
        leftovers = [i[0] for i in everyone if still_running(i)]
        if leftovers:
            logger.warning("killing processes that ignored SIGTERM: %s", leftovers)
            _signal_all(leftovers, signal.SIGKILL)
        for m in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.popen.wait(timeout=5)
            m.settle(2.0)


class StopFlag:
    """Turn SIGTERM/SIGINT into a flag the launcher's loop checks (no exceptions
    thrown into the middle of cleanup)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, _signum: int, _frame: object) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def write_state_file(path: Path, **values: Any) -> None:
    """A launcher's state (its pid plus ``values``), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, json.dumps({"pid": os.getpid(), **values}).encode())


def read_state_file(path: Path) -> dict[str, Any] | None:
    """The state a launcher wrote, or None if there is none or its launcher is gone."""
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state if is_running(int(state.get("pid", -1))) else None


# ``python -m fedctr.federation.cli`` would load the CLI twice (as __main__ and as a module).
FEDCTR = (
    sys.executable,
    "-c",
    "import sys; from fedctr.federation.cli import main; sys.exit(main())",
)


def flwr_bin(name: str) -> str:
    """A Flower or fedctr executable next to the running Python (the same venv)."""
    return str(Path(sys.executable).parent / name)


def executable_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with the running Python's ``bin`` first on PATH (Flower
    starts ``flower-superexec`` and ``flwr-*`` by name) and Flower kept quiet."""
    import sys

    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


__all__ = [
    "FEDCTR",
    "Managed",
    "StopFlag",
    "Supervisor",
    "descendants",
    "executable_env",
    "flwr_bin",
    "free_port",
    "identity",
    "is_running",
    "read_state_file",
    "still_running",
    "write_state_file",
]
