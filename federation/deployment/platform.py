"""The platform side: run the SuperLink and register partners' node keys.

``fedctr platform start`` runs Flower's ``flower-superlink`` with TLS, SuperNode
authentication and runtime dependency installation off, with ``FLWR_HOME`` inside
the platform folder; then registers every key in ``node-keys/`` with ``flwr
supernode register``. ``fedctr platform run`` submits the federation with ``flwr
run`` (run config ``platform-config=...``), follows the rounds and reports the
published, signed model. The app submitted is a descriptor (pyproject.toml only):
the ServerApp and ClientApp code is the fedctr installed on each machine, so the
platform never ships code to partners' machines.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from fedctr.federation.config import load_platform_config
from fedctr.federation.deployment.errors import DeploymentError
from fedctr.federation.deployment.processes import (
    FEDCTR,
    StopFlag,
    Supervisor,
    executable_env,
    flwr_bin,
    is_running,
    read_state_file,
    write_state_file,
)
from fedctr.federation.deployment.settings import SuperLinkSettings, load_superlink_settings
from fedctr.federation.grid import STOCK, WAITS_ENV

logger = logging.getLogger(__name__)

CONNECTION = "fedctr"  # the SuperLink connection name in FLWR_HOME/config.toml
STATE_FILE = "superlink.json"


def write_flwr_config(link: SuperLinkSettings) -> Path:
    """``FLWR_HOME/config.toml``: one connection, to this SuperLink over TLS."""
    link.flwr_home.mkdir(parents=True, exist_ok=True)
    path = link.flwr_home / "config.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "superlink": {
                    "default": CONNECTION,
                    CONNECTION: {
                        "address": link.local_address,
                        "root-certificates": str(link.ca_cert),
                    },
                }
            }
        )
    )
    return path


def flwr_env(link: SuperLinkSettings, *, stock: bool = False) -> dict[str, str]:
    extra = {"FLWR_HOME": str(link.flwr_home)}
    if stock:
        extra[WAITS_ENV] = STOCK
    else:
        extra["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.1"  # ServerApp launch (1 s)
    return executable_env(extra)


def superlink_argv(link: SuperLinkSettings) -> list[str]:
    return [
        flwr_bin("flower-superlink"),
        "--ssl-ca-certfile",
        str(link.ca_cert),
        "--ssl-certfile",
        str(link.server_cert),
        "--ssl-keyfile",
        str(link.server_key),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--host",
        link.host,
        "--port",
        str(link.port),
        # Persistent state: registered node keys and runs survive a SuperLink restart,
        # so partners' SuperNodes reconnect on their own (they retry with back-off).
        "--database",
        str(link.state_dir / SUPERLINK_DATABASE),
    ]


def superlink_answers(link: SuperLinkSettings, *, timeout_s: float = 2.0) -> bool:
    """True once the SuperLink completes a TLS handshake and answers HTTP."""
    context = ssl.create_default_context(cafile=str(link.ca_cert))
    context.check_hostname = False  # readiness only; the CA still verifies the cert
    try:
        httpx.get(f"https://{link.local_address}/", verify=context, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return True


SUPERLINK_DATABASE = "superlink.db"


# ---- state file: is the SuperLink of this folder up? -------------------------
def write_state(link: SuperLinkSettings, **values: Any) -> None:
    write_state_file(link.state_dir / STATE_FILE, **values)


def read_state(link: SuperLinkSettings) -> dict[str, Any] | None:
    """The running launcher's state, or None if no launcher of this folder is alive."""
    return read_state_file(link.state_dir / STATE_FILE)


# ---- registration -----------------------------------------------------------
def register_nodes(link: SuperLinkSettings, env: dict[str, str], names: list[str]) -> list[str]:
    """``flwr supernode register`` for ``node-keys/<name>.pub`` (in parallel)."""
    procs = {
        name: subprocess.Popen(
            [
                flwr_bin("flwr"),
                "supernode",
                "register",
                str(link.node_keys / f"{name}.pub"),
                CONNECTION,
                "--name",
                name,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name in names
    }
    failed = []
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        text = out.decode("utf-8", "replace")
        if "already in use" in text:  # registered before a restart (persistent state)
            continue
        if proc.returncode != 0 or "registered successfully" not in text:
            failed.append(name)
            logger.error("registering %s's node key failed:\n%s", name, text.strip())
    if failed:
        raise DeploymentError(f"could not register node keys of {failed} (see log above)")
    return names


def registered_partners(link: SuperLinkSettings) -> list[str]:
    return sorted(p.stem for p in link.node_keys.glob("*.pub"))


def register_now(platform_toml: Path, partner_id: str) -> bool:
    """Register one partner with the running SuperLink; False if none is running."""
    link = load_superlink_settings(platform_toml)
    state = read_state(link)
    if state is None or state.get("status") != "ready":
        return False
    register_nodes(link, flwr_env(link), [partner_id])
    return True


# ---- platform start -----------------------------------------------------------
def start_platform(
    platform_toml: Path,
    *,
    stop: StopFlag,
    ready_timeout_s: float = 120.0,
    stock: bool = False,
) -> int:
    """Run the SuperLink until SIGTERM/SIGINT; 0 on a clean stop."""
    link = load_superlink_settings(platform_toml)
    load_platform_config(platform_toml)  # fail now, not at the first run
    current = read_state(link)
    if current is not None:
        raise DeploymentError(
            f"a launcher (pid {current['pid']}) already runs the SuperLink of {link.root}"
        )
    write_flwr_config(link)
    env = flwr_env(link, stock=stock)
    sup = Supervisor(link.log_dir)
    write_state(link, status="starting", port=link.port)
    try:
        sup.start("superlink", superlink_argv(link), env)
        sup.wait(
            lambda: superlink_answers(link),
            timeout=ready_timeout_s,
            what=f"the SuperLink on {link.local_address}",
            stop=stop.event,
        )
        names = registered_partners(link)
        if names:
            register_nodes(link, env, names)
        write_state(link, status="ready", port=link.port, address=link.address)
        logger.info(
            "SuperLink ready: partners dial %s (TLS, node authentication); registered: %s",
            link.address,
            ", ".join(names) or "none yet (fedctr platform add-partner)",
        )
        logger.info("logs in %s; stop with Ctrl-C or SIGTERM", link.log_dir)
        while not stop.is_set():
            dead = sup.first_exited()
            if dead is not None:
                raise dead.failure()
            stop.event.wait(0.2)
        logger.info("stopping the SuperLink")
        return 0
    finally:
        sup.stop_all()
        (link.state_dir / STATE_FILE).unlink(missing_ok=True)


def start_in_background(platform_toml: Path, *, ready_timeout_s: float = 180.0) -> int:
    """``fedctr platform start`` as a detached process; returns its pid once ready.

    It runs in its own session (so a terminal's Ctrl-C does not reach it) and logs
    to ``logs/platform.out``; :func:`stop_background` stops it.
    """
    link = load_superlink_settings(platform_toml)
    if read_state(link) is not None:
        raise DeploymentError(f"the SuperLink of {link.root} is already running")
    link.log_dir.mkdir(parents=True, exist_ok=True)
    out = link.log_dir / "platform.out"
    with out.open("ab") as fh:
        proc = subprocess.Popen(
            [*FEDCTR, "platform", "start", str(link.root)],
            env=executable_env(),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + ready_timeout_s
    while True:
        state = read_state(link)
        if state is not None and state.get("status") == "ready":
            return proc.pid
        if proc.poll() is not None:
            raise DeploymentError(
                f"the platform exited with {proc.returncode}; {out} ends with:\n"
                + "\n".join(out.read_text(errors="replace").splitlines()[-15:])
            )
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            raise DeploymentError(f"the SuperLink was not ready after {ready_timeout_s:.0f}s")
        time.sleep(0.2)


def stop_background(platform_toml: Path, *, grace_s: float = 30.0) -> bool:
    """SIGTERM the running launcher's process group; False if none was running."""
    link = load_superlink_settings(platform_toml)
    state = read_state(link)
    if state is None:
        return False
    pid = int(state["pid"])
    os.killpg(os.getpgid(pid), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_running(pid):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    return True


__all__ = [
    "CONNECTION",
    "flwr_env",
    "read_state",
    "register_now",
    "start_in_background",
    "start_platform",
    "stop_background",
    "superlink_answers",
    "write_flwr_config",
]
