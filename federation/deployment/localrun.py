"""A whole deployment on one machine: the integration test, the benchmark, a quick try.

Each launcher (``fedctr platform start``, ``fedctr partner start``) runs as a real
``fedctr`` process in its own session, exactly as an operator would start it in a
terminal; this class only starts them, polls their state files for readiness,
and stops them (SIGTERM to each process group, SIGKILL after a grace period),
reporting any process that outlived its launcher.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from fedctr.federation.deployment.errors import ProcessFailed
from fedctr.federation.deployment.partner import read_node_state
from fedctr.federation.deployment.platform import read_state
from fedctr.federation.deployment.processes import (
    FEDCTR,
    Identity,
    descendants,
    executable_env,
    identity,
    still_running,
)
from fedctr.federation.deployment.settings import load_node_settings, load_superlink_settings


@dataclass
class Launcher:
    """One ``fedctr`` launcher process (leader of its own process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    output: Path
    seen: set[Identity] = field(default_factory=set)  # every process seen in its tree

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        """The launcher and its live descendants (remembered for the orphan check)."""
        pids = [self.pid, *descendants(self.pid)] if self.running() else []
        self.seen.update(i for pid in pids if (i := identity(pid)) is not None)
        return pids

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


def poll(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.1
) -> None:
    """Wait until ``condition()``; ProcessFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ProcessFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)


class LocalDeployment:
    """Start platform and partner launchers under ``root``; stop them all on exit."""

    def __init__(self, root: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = executable_env(extra_env)
        self.launchers: dict[str, Launcher] = {}

    def launch(self, name: str, args: Sequence[str]) -> Launcher:
        output = self.root / f"{name}.out"
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("ab") as out:
            popen = subprocess.Popen(
                [*FEDCTR, *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        launcher = Launcher(name, popen, output)
        self.launchers[name] = launcher
        return launcher

    def start_platform(self, platform_dir: Path, *args: str) -> Launcher:
        return self.launch("platform", ["platform", "start", str(platform_dir), *args])

    def start_partner(self, partner_dir: Path, *args: str) -> Launcher:
        return self.launch(partner_dir.name, ["partner", "start", str(partner_dir), *args])

    def _alive(self, launcher: Launcher) -> None:
        launcher.tree()
        if not launcher.running():
            raise ProcessFailed(
                f"{launcher.name} exited with {launcher.popen.returncode}:\n"
                + launcher.text()[-3000:]
            )

    def wait_platform(self, platform_dir: Path, *, timeout_s: float = 180.0) -> None:
        link = load_superlink_settings(platform_dir / "platform.toml")
        launcher = self.launchers["platform"]

        def ready() -> bool:
            self._alive(launcher)
            state = read_state(link)
            return state is not None and state.get("status") == "ready"

        poll(ready, timeout_s=timeout_s, what="the platform's SuperLink")

    def wait_partners(self, partner_dirs: Sequence[Path], *, timeout_s: float = 240.0) -> None:
        nodes = [load_node_settings(d / "partner.toml") for d in partner_dirs]

        def ready() -> bool:
            for d in partner_dirs:
                self._alive(self.launchers[d.name])
            states = [read_node_state(node) for node in nodes]
            return all(s is not None and s.get("status") == "ready" for s in states)

        poll(ready, timeout_s=timeout_s, what=f"partners {[d.name for d in partner_dirs]}")

    def wait_exit(self, name: str, *, timeout_s: float) -> int:
        launcher = self.launchers[name]
        poll(
            lambda: (launcher.tree(), not launcher.running())[1],
            timeout_s=timeout_s,
            what=f"{name} to exit",
        )
        return int(launcher.popen.returncode)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a launcher's whole process group (SIGKILL: a crashed machine)."""
        launcher = self.launchers[name]
        launcher.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            launcher.popen.wait(timeout=30)

    def stop(self, *names: str, grace_s: float = 45.0) -> None:
        """SIGTERM these launchers' process groups at once; SIGKILL after ``grace_s``."""
        running = [self.launchers[n] for n in names if self.launchers[n].running()]
        for launcher in running:
            launcher.tree()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for launcher in running:
            try:
                launcher.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(launcher.pid, signal.SIGKILL)
                launcher.popen.wait(timeout=30)

    def stop_all(self) -> list[int]:
        """Stop partners, then the platform; return pids that outlived their launcher."""
        self.stop(*(n for n in self.launchers if n != "platform"))
        if "platform" in self.launchers:
            self.stop("platform")
        deadline = time.monotonic() + 20
        seen = {i for launcher in self.launchers.values() for i in launcher.seen}
        while time.monotonic() < deadline and any(still_running(i) for i in seen):
            time.sleep(0.1)
        orphans = sorted(i for i in seen if still_running(i))
        for pid, _ in orphans:  # never leave them behind, even when reporting them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return [pid for pid, _ in orphans]

    @contextlib.contextmanager
    def watching(self, every_s: float = 0.5) -> Iterator[None]:
        """Record the launchers' process trees while the body runs (orphan check)."""
        import threading

        done = threading.Event()

        def loop() -> None:
            while not done.wait(every_s):
                for launcher in list(self.launchers.values()):
                    launcher.tree()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


__all__ = ["Launcher", "LocalDeployment", "poll"]
