"""The platform's Flower ServerApp: run the federation, then publish and record it.

The same app object serves ``flwr run`` against a SuperLink and the in-process
simulation engine; only where the platform config comes from differs (see
:func:`fedctr.federation.config.resolve_platform_config`).
"""

from __future__ import annotations

import logging
import os

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedctr.federation.config import PlatformConfig, resolve_platform_config
from fedctr.federation.grid import responsive_grid
from fedctr.federation.release_gate import run_release_gate
from fedctr.privacy.signing import load_private_key
from fedctr.server.platform.faults import FAULT_ENV, FaultPlan
from fedctr.server.platform.ledger import PlatformLedger, load_partner_keys
from fedctr.server.platform.orchestrator import FederationPlan, run_federation
from fedctr.server.platform.publishing import SUMMARY_FILE, PublishTarget, publish_outcome

logger = logging.getLogger(__name__)

RUN_ID_KEY = "run-id"
RUN_ID_ENV = "FEDCTR_RUN_ID"
RESUME_KEY = "resume"  # run config: "true" continues run-id from its last committed round
RESUME_ENV = "FEDCTR_RESUME"  # the same, for the simulation engine
FAULT_KEY = "fault"  # run config, fault-injection tests only: "<stage>@<round>"

app = ServerApp()


def prepare_run(context: Context) -> tuple[PlatformConfig, FederationPlan, PlatformLedger]:
    """The platform config, the run's plan and its ledger, from the run context.

    Shared with audit ServerApps (``fedctr.federation.demo.federation_audit``), which
    run the same plan with canary clients and publish nothing.
    """
    config = resolve_platform_config(dict(context.run_config))
    run_id = str(
        context.run_config.get(RUN_ID_KEY, "")
        or os.environ.get(RUN_ID_ENV, "")
        or f"{config.run_name}-{context.run_id}"
    )
    plan = config.plan(run_id=run_id)
    logger.info(
        "run %s: %d rounds of %s with %s", run_id, plan.rounds, plan.model.name, plan.strategy.name
    )
    ledger = PlatformLedger(
        config.ledger,
        load_private_key(config.signing_key),
        partner_keys=load_partner_keys(config.partner_keys),
    )
    return config, plan, ledger


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train for the configured rounds; with ``[release_gate]``, audit every declared
    configuration empirically (a refuted claim blocks publication); publish the signed
    model and ledger it."""
    config, plan, ledger = prepare_run(context)
    resume = str(
        context.run_config.get(RESUME_KEY, "") or os.environ.get(RESUME_ENV, "")
    ).lower() in ("1", "true", "yes")
    # Injected crashes (tests) end only a first attempt, never the run that resumes it.
    faults = (
        FaultPlan()
        if resume
        else FaultPlan.from_value(
            str(context.run_config.get(FAULT_KEY, "") or os.environ.get(FAULT_ENV, ""))
        )
    )
    if resume and (plan.work_dir / SUMMARY_FILE).exists():
        logger.info("run %s was published before; nothing to resume", plan.run_id)
        return
    outcome = run_federation(
        responsive_grid(grid), plan, ledger=ledger, resume=resume, faults=faults
    )
    audits = None
    if config.release_gate is not None:
        audits = run_release_gate(
            outcome, config.release_gate, spec_path=config.spec_path, ledger=ledger
        )
    publish_outcome(
        outcome,
        PublishTarget(
            registry=config.registry, signing_key=config.signing_key, ledger=config.ledger
        ),
        empirical_audits=audits,
        faults=faults,
    )


__all__ = [
    "FAULT_KEY",
    "RESUME_ENV",
    "RESUME_KEY",
    "RUN_ID_ENV",
    "RUN_ID_KEY",
    "app",
    "prepare_run",
]
