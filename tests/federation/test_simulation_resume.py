"""Resuming under Flower's simulation engine (Ray): the same rule as a deployment.

The first attempt's ServerApp stops right after round 1's replies arrive (they are in
the journal, nothing is aggregated); ``run_simulation(resume=True)`` with the
platform's own ServerApp completes round 1 from the journal and runs round 2. Every
virtual partner trained each round once and released it once, and the audit passes.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.clients.node import ROUND_TIMES_FILE
from fedctr.federation.demo.auditing import collect_audit_inputs
from fedctr.federation.grid import responsive_grid
from fedctr.federation.server_app import prepare_run
from fedctr.federation.simulation import run_simulation
from fedctr.federation.workspace import PartnerSetup, create_workspace
from fedctr.models import builtin_spec_path, load_spec, model_config
from fedctr.privacy.audit import audit_directories
from fedctr.privacy.ledger import PartnerRelease, read_ledger
from fedctr.server.platform.faults import FaultPlan, FaultStage
from fedctr.server.platform.orchestrator import run_federation
from fedctr.server.platform.strategies.registry import strategy_config

pytestmark = pytest.mark.slow

RUN = "sim-resume"

crashing = ServerApp()


@crashing.main()
def _crash_after_round_1_replies(grid: Grid, context: Context) -> None:
    _, plan, ledger = prepare_run(context)
    run_federation(
        responsive_grid(grid),
        plan,
        ledger=ledger,
        faults=FaultPlan(FaultStage.AFTER_REPLIES, 1),
    )


def test_a_simulated_run_resumes_after_the_serverapp_stopped(tmp_path: Path, synthetic_logs):
    logs, test_file = synthetic_logs
    privacy = PrivacySettings(epsilon=4.0, delta=1e-5, planned_rounds=2, sample_rate=0.25)
    training = TrainingSettings(batch_size=256, local_epochs=1, learning_rate=0.01)
    spec_file = builtin_spec_path("demo")
    ws = create_workspace(
        tmp_path / "fed",
        spec_file=spec_file,
        spec=load_spec(spec_file),
        partners=[PartnerSetup(pid, path, privacy, training) for pid, path in logs.items()],
        model=model_config("lr"),
        strategy=strategy_config(min_partners=2),
        rounds=2,
        eval_data=test_file,
    )
    simulate = {
        "platform_config": ws.platform_config,
        "partner_configs": list(ws.partner_configs.values()),
        "run_id": RUN,
        "flwr_home": tmp_path / "flwr-home",
    }
    with contextlib.suppress(Exception):  # the engine may or may not re-raise the crash
        run_simulation(**simulate, server_app=crashing)
    run_dir = ws.runs / RUN
    assert not (run_dir / "summary.json").exists()
    assert len(list((run_dir / "journal" / "round-0001").iterdir())) == len(logs)

    run_simulation(**simulate, resume=True)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["aggregated"] for r in summary["rounds"]] == [True, True]
    for pid in logs:
        ledger = read_ledger(ws.partner_dir(pid) / "ledger.jsonl")
        releases = [e.parsed_body() for e in ledger.entries]
        assert [b.round for b in releases if isinstance(b, PartnerRelease)] == [1, 2], pid
        times = (ws.partner_dir(pid) / "state" / ROUND_TIMES_FILE).read_text().splitlines()
        assert [json.loads(t)["round"] for t in times] == [1, 2], pid  # trained once each
    ledgers, keys = collect_audit_inputs(ws, tmp_path / "audit")
    result = audit_directories(ledgers_dir=ledgers, keys_dir=keys, registry_dir=ws.registry)
    assert result.passed, [str(f) for f in result.findings]
