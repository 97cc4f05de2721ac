"""Run a federation on Flower's simulation engine (Ray): many virtual partners, one host.

Each virtual SuperNode serves one partner config, in its own Ray worker process,
with its own data, budget and state directory, exactly as a real node would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flwr.serverapp import ServerApp

from fedctr.federation.client_app import SIM_PARTNERS_ENV
from fedctr.federation.config import PLATFORM_CONFIG_ENV, load_platform_config
from fedctr.federation.server_app import RESUME_ENV, RUN_ID_ENV
from fedctr.server.platform.errors import PlatformConfigError

logger = logging.getLogger(__name__)

FLOWER_QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_DISABLE_USAGE_STATS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    # Partner logs go to the Ray session logs and the partner's own ledger, not the
    # platform operator's terminal; Opacus' secure-RNG and RDP-order notices are known.
    "PYTHONWARNINGS": "ignore::UserWarning,ignore::FutureWarning,ignore::DeprecationWarning",
}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _partner_list(
    platform_config: Path, partner_configs: Sequence[Path], *, to_file: bool = False
) -> str:
    """The partner configs as the ClientApp reads them: joined in the environment, or,
    past what one environment variable can hold (128 KiB on Linux), ``@`` and a file
    listing them one per line (next to the platform config)."""
    paths = [str(Path(p).resolve()) for p in partner_configs]
    joined = os.pathsep.join(paths)
    if len(joined) < 32 << 10 and not to_file:
        return joined
    listing = platform_config.resolve().parent / "simulation-partners.txt"
    listing.write_text("\n".join(paths) + "\n")
    return "@" + str(listing)


def run_simulation(
    *,
    platform_config: Path,
    partner_configs: Sequence[Path],
    run_id: str,
    num_cpus: int | None = None,
    flwr_home: Path | None = None,
    server_app: ServerApp | None = None,
    resume: bool = False,
    ray_address: str | None = None,
) -> None:
    """Run the ServerApp against ``len(partner_configs)`` virtual partners.

    Ray workers inherit this process's environment, which is how each virtual node
    finds its partner config and the ServerApp its platform config. ``server_app``
    replaces the platform's ServerApp (tests play a malicious server with it).
    ``resume`` continues ``run_id`` from its last committed round (a crashed run).
    ``ray_address`` joins a running Ray cluster (``"auto"`` or ``host:port``) instead of
    starting one here: the partners' folders must then be on a filesystem every machine
    mounts at the same path, and each machine's Ray node must have been started with
    ``FEDCTR_SIM_PARTNERS=@<platform folder>/simulation-partners.txt`` in its
    environment (remote workers inherit their node's environment, not this one's);
    see README "Many partners".
    """
    from flwr.simulation import run_simulation as flwr_run_simulation

    from fedctr.federation.client_app import app as client_app

    if server_app is None:
        from fedctr.federation.server_app import app as server_app

    min_partners = load_platform_config(platform_config).strategy.min_partners
    if len(partner_configs) < min_partners:
        raise PlatformConfigError(
            f"{platform_config}: [federation] min_partners = {min_partners}, but only "
            f"{len(partner_configs)} partner(s) are configured: no round could ever be "
            "aggregated, so the run does not start. Add partners or lower min_partners."
        )
    cpus = num_cpus or os.cpu_count() or 1
    env = {
        **FLOWER_QUIET_ENV,
        PLATFORM_CONFIG_ENV: str(Path(platform_config).resolve()),
        SIM_PARTNERS_ENV: _partner_list(
            Path(platform_config), partner_configs, to_file=ray_address is not None
        ),
        RUN_ID_ENV: run_id,
        RESUME_ENV: "1" if resume else "",
    }
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    ray_init: dict[str, object] = {
        "include_dashboard": False,
        "logging_level": "WARNING",
        "log_to_driver": False,
    }
    if ray_address is None:  # one machine: Ray's servers listen on loopback only
        ray_init["num_cpus"] = cpus
        ray_init["_node_ip_address"] = "127.0.0.1"
    else:  # the cluster's own resources; each partner still takes one CPU
        ray_init["address"] = ray_address
    with _environment(env):
        flwr_run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=len(partner_configs),
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": ray_init,
            },
        )


__all__ = ["run_simulation"]
