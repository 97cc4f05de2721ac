"""``fedctr audit-federation``: a federation-level privacy estimate from canary clients.

Runs the demo's generated federation on Flower's simulation engine, with the
platform's real ServerApp path (plan, accountable strategy, ledger checks) except
that ``k`` canary clients join every aggregation
(:mod:`fedctr.server.platform.strategies.canary_clients`) and nothing is published.
At the end the one-shot estimator (:mod:`fedctr.privacy.audit.one_shot`, Andrew et
al. 2024) turns the canaries' cosines into an epsilon at the partners' delta.

What the figure means: fedctr promises *record-level* DP per partner, and the
platform adds no noise of its own, so a whole client's update is plainly visible in
the aggregate and the client-level estimate is large. That is the correct figure for
this deployment: fedctr makes no client-level claim. Under distributed DP with secure
aggregation (issue 17) the same run becomes the check of a client-level claim.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from rich.table import Table

from fedctr.federation.demo.datasets import synthetic_federation
from fedctr.federation.demo.run import DemoOptions, build_demo_workspace
from fedctr.federation.grid import responsive_grid
from fedctr.federation.server_app import prepare_run
from fedctr.federation.simulation import run_simulation
from fedctr.privacy.audit.one_shot import OneShotEstimate, estimate_epsilon, null_floor
from fedctr.server.platform.orchestrator import FederationOutcome, run_federation
from fedctr.server.platform.strategies.canary_clients import (
    CanaryAuditError,
    CanaryClients,
    CanaryConfig,
    CanaryRecord,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FederationAuditOptions:
    """The federation (the demo's generated one) and the canaries."""

    workdir: Path
    canaries: CanaryConfig = field(default_factory=CanaryConfig)
    rounds: int = 3
    model: str = "lr"
    strategy: str = "fedavg"
    epsilon: float = 8.0
    delta: float = 1e-5
    num_cpus: int | None = None

    def demo_options(self) -> DemoOptions:
        return DemoOptions(
            workdir=self.workdir,
            rounds=self.rounds,
            model=self.model,
            strategy=self.strategy,
            epsilon=self.epsilon,
            delta=self.delta,
            serve=False,
            audit=False,
        )


@dataclass(frozen=True)
class FederationAuditResult:
    """The estimates and what they are about.

    ``final``: inserted canaries' cosine with the final model delta against the
    analytic N(0, 1/d) null (the paper's method). ``all_iterates``: their largest
    per-round cosine against the unseen canaries' (fitted). ``unseen_final``: the
    unseen canaries run through ``final``'s estimator, a zero-signal check that should
    stay under ``floor``, the 95% estimate of as many canaries the model never saw.
    ``claimed_epsilon``: each partner's record-level epsilon spent by the last round.
    """

    final: OneShotEstimate
    all_iterates: OneShotEstimate
    unseen_final: OneShotEstimate
    floor: float
    claimed_epsilon: dict[str, float]
    canaries: CanaryConfig
    inserted: int
    dim: int
    rounds: int
    median_scale: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _audit_app(
    canaries: CanaryConfig, record: CanaryRecord, out: list[FederationOutcome]
) -> ServerApp:
    """The platform's run with canary clients inside the accountable layer; no publishing."""
    app = ServerApp()

    def wrap(strategy: Strategy) -> Strategy:
        return CanaryClients(strategy, canaries, record)

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        _, plan, ledger = prepare_run(context)
        out.append(
            run_federation(responsive_grid(grid), plan, ledger=ledger, wrap_aggregation=wrap)
        )

    return app


def estimate(record: CanaryRecord, delta: float) -> tuple[OneShotEstimate, ...]:
    """(final, all-iterates, unseen-as-inserted) estimates from a finished run's record."""
    inserted = record.inserted()
    if len(inserted) < 2:
        raise CanaryAuditError(
            f"only {len(inserted)} canaries took part in any round; raise the participation "
            "or the number of rounds"
        )
    unseen = record.config.unseen_indices
    final = estimate_epsilon(record.final_cosines(inserted), delta=delta, dim=record.dim)
    iterates = estimate_epsilon(
        record.max_round_cosines(inserted),
        delta=delta,
        dim=record.dim,
        null=record.max_round_cosines(unseen),
    )
    unseen_final = estimate_epsilon(record.final_cosines(unseen), delta=delta, dim=record.dim)
    return final, iterates, unseen_final


def run_federation_audit(opts: FederationAuditOptions) -> FederationAuditResult:
    """Generate the federation, run it with canaries, estimate epsilon."""
    started = time.monotonic()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    demo = opts.demo_options()
    ws = build_demo_workspace(demo, synthetic_federation(opts.workdir / "data"))
    record = CanaryRecord(opts.canaries)
    outcomes: list[FederationOutcome] = []
    run_simulation(
        platform_config=ws.platform_config,
        partner_configs=list(ws.partner_configs.values()),
        run_id="federation-audit",
        num_cpus=opts.num_cpus,
        flwr_home=opts.workdir / "flwr-home",
        server_app=_audit_app(opts.canaries, record, outcomes),
    )
    if not outcomes or not record.rounds:
        raise CanaryAuditError(f"the audit run aggregated no round; see the logs in {opts.workdir}")
    final, iterates, unseen_final = estimate(record, opts.delta)
    claimed = {
        pid: max(float(t.epsilon or 0.0) for t in trains)
        for pid, trains in outcomes[0].round_log.contributors().items()
    }
    return FederationAuditResult(
        final=final,
        all_iterates=iterates,
        unseen_final=unseen_final,
        floor=null_floor(final.count, dim=record.dim, delta=opts.delta),
        claimed_epsilon=claimed,
        canaries=opts.canaries,
        inserted=final.count,
        dim=record.dim,
        rounds=len(record.rounds),
        median_scale=sorted(r.scale for r in record.rounds)[len(record.rounds) // 2],
        seconds=time.monotonic() - started,
    )


def result_table(result: FederationAuditResult) -> Table:
    """The estimates beside the partners' record-level claims, and what was run."""
    claims = ", ".join(f"{p} {e:.2f}" for p, e in sorted(result.claimed_epsilon.items()))
    table = Table(
        title="Federation-level empirical privacy estimate (canary clients, one run)",
        caption="client-level estimate: the platform adds no noise, so a client's whole update "
        "shows; fedctr claims record-level DP per partner only (no client-level claim)",
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    delta = result.final.delta
    rows = [
        (f"ε estimate, final model (δ={delta:g})", f"{result.final.epsilon:.1f}"),
        ("ε estimate, all iterates", f"{result.all_iterates.epsilon:.1f}"),
        ("canary cosine mean / null std (separation)", f"{result.final.separation:.1f}"),
        ("zero-signal check: unseen canaries' ε", f"{result.unseen_final.epsilon:.2f}"),
        (f"noise floor (95%) for {result.inserted} canaries", f"{result.floor:.2f}"),
        ("partners' claimed record-level ε", claims or "-"),
        (
            "canaries k inserted / unseen, participation",
            f"{result.inserted} / {result.canaries.unseen}, {result.canaries.participation:g}",
        ),
        ("parameters d", f"{result.dim:,}"),
        ("rounds aggregated", str(result.rounds)),
        ("canary update norm (median real update)", f"{result.median_scale:.4g}"),
        ("seconds", f"{result.seconds:.0f}"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


__all__ = [
    "FederationAuditOptions",
    "FederationAuditResult",
    "estimate",
    "result_table",
    "run_federation_audit",
]
