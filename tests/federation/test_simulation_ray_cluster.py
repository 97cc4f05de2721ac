"""The simulation joins a Ray cluster that was started beforehand (README "Many
partners"): a head node started with ``ray start`` and the partner list in its
environment, on loopback, serves the virtual partners of a real federation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.federation.client_app import SIM_PARTNERS_ENV
from fedctr.federation.deployment.processes import free_port
from fedctr.federation.simulation import FLOWER_QUIET_ENV, run_simulation
from fedctr.federation.workspace import PartnerSetup, create_workspace
from fedctr.models import builtin_spec_path, load_spec, model_config
from fedctr.server.platform.strategies.registry import strategy_config

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).parent / "ray"


def test_virtual_partners_run_on_a_ray_cluster_started_beforehand(
    tmp_path: Path, synthetic_logs
) -> None:
    logs, test_file = synthetic_logs
    privacy = PrivacySettings(epsilon=4.0, delta=1e-5, planned_rounds=1, sample_rate=0.25)
    training = TrainingSettings(batch_size=256, learning_rate=0.01)
    spec_file = builtin_spec_path("demo")
    ws = create_workspace(
        tmp_path / "fed",
        spec_file=spec_file,
        spec=load_spec(spec_file),
        partners=[PartnerSetup(pid, path, privacy, training) for pid, path in logs.items()],
        model=model_config("lr"),
        strategy=strategy_config(min_partners=3),
        rounds=1,
        eval_data=test_file,
    )
    port = free_port()
    # what an operator exports on every machine before `ray start`
    listing = ws.platform_config.parent / "simulation-partners.txt"
    # Ray's sockets live under its temp dir and a Unix socket path holds 107 bytes:
    # pytest's tmp_path is too deep.
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {
        **os.environ,
        **FLOWER_QUIET_ENV,
        SIM_PARTNERS_ENV: f"@{listing}",
        # Ray turns 127.0.0.1 into the machine's routable address unless it is told
        # this is a single-machine cluster: the test's servers stay on loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    head = [
        str(RAY),
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={ray_tmp}",
    ]
    started = subprocess.run(head, env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        run_simulation(
            platform_config=ws.platform_config,
            partner_configs=list(ws.partner_configs.values()),
            run_id="cluster-run",
            flwr_home=tmp_path / "flwr-home",
            ray_address=f"127.0.0.1:{port}",
        )
    finally:
        import ray

        ray.shutdown()
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert listing.read_text().split() == [str(p.resolve()) for p in ws.partner_configs.values()]
    summary = json.loads((ws.runs / "cluster-run" / "summary.json").read_text())
    (only,) = summary["rounds"]
    assert only["aggregated"]
    assert sorted(t["partner_id"] for t in only["train"]) == sorted(logs)
