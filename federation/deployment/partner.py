"""The partner side: run an authenticated SuperNode that serves the partner's node.

``fedctr partner start DIR`` runs Flower's SuperNode with the platform's CA as
root certificate, the partner's own node key and ``--node-config
'partner-config="DIR/partner.toml"'`` (how the ClientApp finds its partner), plus,
on the pinned Flower, the forking executor (:mod:`fedctr.federation.deployment.
flower_runtime`) in place of ``flower-superexec``. It logs to ``DIR/logs``, writes
``DIR/run/node.json`` once connected, and stops everything on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from fedctr.clients.config import PartnerConfig, load_partner_config
from fedctr.errors import FedctrError
from fedctr.federation.client_app import PARTNER_CONFIG_KEY
from fedctr.federation.deployment.errors import (
    DeploymentConfigError,
    NodeNotRegistered,
    ProcessFailed,
    TlsVerificationFailed,
)
from fedctr.federation.deployment.processes import (
    Managed,
    StopFlag,
    Supervisor,
    executable_env,
    flwr_bin,
    free_port,
    read_state_file,
    write_state_file,
)
from fedctr.federation.deployment.settings import NodeSettings, load_node_settings
from fedctr.federation.flower_runtime import fast_path_available
from fedctr.federation.waits import waits_to_env
from fedctr.models import load_spec
from fedctr.models.logs.reader import read_partner_log

logger = logging.getLogger(__name__)

STATE_FILE = "node.json"
CONNECTED = re.compile(r"SuperNode ID: (\d+)")
EXECUTOR_READY = "fedctr executor ready"
# Lines of the ClientApp's own log the operator should see in the terminal.
ROUND_DONE = re.compile(r"INFO clients\.node: (partner \S+ round \d+: .*)")
ROUND_FAILED = re.compile(r"WARNING federation\.client_app: (.*)")
NOT_REGISTERED = "Failed to activate SuperNode"
TLS_FAILURE = re.compile(r"CERTIFICATE_VERIFY_FAILED|SSL/TLS handshake error")


def check_data(config: PartnerConfig) -> bool:
    """Read the partner's file through the spec now, so a problem shows at start.

    A bad file does not stop the node: each round it tells the platform why it
    cannot train (``bad-data``), and the federation goes on with the others.
    """
    try:
        data = read_partner_log(config.data, load_spec(config.spec), policy=config.bad_rows)
    except FedctrError as exc:
        logger.error(
            "partner %s: the data file cannot be used: %s. The node still connects and "
            "reports this to the platform each round; fix [partner] data in %s",
            config.partner_id,
            exc,
            config.data,
        )
        return False
    logger.info("partner %s: %s", config.partner_id, data.report.summary())
    return True


def _check_private_key(path: Path) -> None:
    if not path.is_file():
        raise DeploymentConfigError(f"node key {path} is missing (fedctr partner init makes it)")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise DeploymentConfigError(
            f"node key {path} is readable by other users; run: chmod 600 {path}"
        )


def supernode_argv(node: NodeSettings, runtime_port: int, *, fast: bool) -> list[str]:
    head = (
        [sys.executable, "-m", "fedctr.federation.flower_runtime", "supernode"]
        if fast
        else [flwr_bin("flower-supernode")]
    )
    argv = [*head, "--superlink", node.superlink]
    if node.root_certificates is not None:
        argv += ["--root-certificates", str(node.root_certificates)]
    argv += [
        "--auth-supernode-private-key",
        str(node.node_key),
        "--node-config",
        f'{PARTNER_CONFIG_KEY}="{node.source}"',
        "--host",
        "127.0.0.1",
        "--port",
        str(runtime_port),
    ]
    if fast:
        argv += ["--isolation", "process"]
    return argv


def executor_argv(runtime_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fedctr.federation.flower_runtime",
        "executor",
        "--runtime-api-address",
        f"127.0.0.1:{runtime_port}",
        "--parent-pid",
        str(os.getpid()),
    ]


def _failure(node: NodeSettings, dead: Managed) -> ProcessFailed:
    """Why the SuperNode stopped, in the partner operator's terms."""
    dead.settle()
    tail = dead.tail(25)
    code = dead.exit_code()
    if NOT_REGISTERED in tail:
        return NodeNotRegistered(
            f"the platform at {node.superlink} refused this node's key ({node.node_key}); "
            f"send {node.root / 'registration.toml'} to the platform operator, who runs "
            "`fedctr platform add-partner PLATFORM_DIR registration.toml`",
            exit_code=code,
        )
    if TLS_FAILURE.search(tail):
        return TlsVerificationFailed(
            f"could not verify the SuperLink's TLS certificate at {node.superlink}: "
            f"[node] root_certificates must be the platform's tls/ca.crt "
            f"(now: {node.root_certificates or 'not set'}) and the address must be one of "
            "the certificate's hosts",
            exit_code=code,
        )
    return dead.failure(lines=25)


def read_node_state(node: NodeSettings) -> dict[str, Any] | None:
    """The running launcher's state (``status``, ``node_id``, ``pid``), or None."""
    return read_state_file(node.state_dir / STATE_FILE)


def _write_state(node: NodeSettings, **values: Any) -> None:
    write_state_file(node.state_dir / STATE_FILE, **values)


def start_partner(
    partner_toml: Path,
    *,
    stop: StopFlag,
    stock: bool = False,
    check: bool = True,
    register_wait_s: float = 120.0,
) -> int:
    """Run this partner's node until SIGTERM/SIGINT; 0 on a clean stop.

    If the platform refuses the node's key, the node tries again for
    ``register_wait_s`` seconds (the platform may be registering it right now),
    then raises :class:`NodeNotRegistered`.
    """
    node = load_node_settings(partner_toml)
    config = load_partner_config(partner_toml)
    _check_private_key(node.node_key)
    if node.root_certificates is not None and not node.root_certificates.is_file():
        raise DeploymentConfigError(f"CA certificate {node.root_certificates} is missing")
    if read_node_state(node) is not None:
        raise DeploymentConfigError(f"a node of {node.root} is already running")
    if check:
        check_data(config)
    fast = not stock and fast_path_available()
    port = node.runtime_port or free_port()
    env = executable_env({"FLWR_HOME": str(node.flwr_home)})
    env.update(waits_to_env(node.waits))
    sup = Supervisor(node.log_dir)
    seen: dict[str, str] = {}

    def watch(proc: Managed, line: str) -> None:
        if (m := CONNECTED.search(line)) is not None:
            seen["node_id"] = m.group(1)
        if EXECUTOR_READY in line:
            seen["executor"] = "ready"
        if (m := ROUND_DONE.search(line)) is not None:
            logger.info("%s", m.group(1))
        elif (m := ROUND_FAILED.search(line)) is not None:
            logger.warning("this node did not contribute: %s", m.group(1))

    sup.on_line(watch)
    _write_state(node, status="starting")
    started = time.monotonic()
    try:
        supernode = sup.start("supernode", supernode_argv(node, port, fast=fast), env)
        if fast:
            sup.start("executor", executor_argv(port), env)
        connected = False
        while not stop.is_set():
            dead = sup.first_exited()
            if dead is not None:
                failure = _failure(node, dead)
                waited = time.monotonic() - started
                if (
                    dead is supernode
                    and isinstance(failure, NodeNotRegistered)
                    and (waited < register_wait_s)
                ):
                    # The platform may still be registering keys (it does so right after
                    # its SuperLink starts, or at add-partner): try again for a while.
                    logger.warning(
                        "%s; trying again for up to %.0fs more", failure, register_wait_s - waited
                    )
                    sup.forget(dead)
                    stop.event.wait(3.0)
                    supernode = sup.start("supernode", supernode_argv(node, port, fast=fast), env)
                    continue
                raise failure
            ready = "node_id" in seen and (not fast or "executor" in seen)
            if ready and not connected:
                connected = True
                _write_state(node, status="ready", node_id=int(seen["node_id"]))
                logger.info(
                    "partner %s connected to %s as node %s in %.0fs (%s); waiting for rounds",
                    node.partner_id,
                    node.superlink,
                    seen["node_id"],
                    time.monotonic() - started,
                    "warm forking executor" if fast else "stock Flower processes",
                )
            stop.event.wait(0.1)
        logger.info("stopping partner %s's node", node.partner_id)
        return 0
    finally:
        sup.stop_all()
        (node.state_dir / STATE_FILE).unlink(missing_ok=True)


__all__ = ["check_data", "read_node_state", "start_partner", "supernode_argv"]
