"""``fedctr demo``: the whole story on one machine, end to end.

Partners train locally with DP-SGD under their own budgets on Flower's simulation
engine; the platform aggregates, evaluates, signs and publishes; the scoring API
serves the signed model over HTTP; the auditor verifies every epsilon.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.errors import FedctrError
from fedctr.federation.demo.auditing import run_demo_audit
from fedctr.federation.demo.baseline import centralized_baseline
from fedctr.federation.demo.datasets import FederationData, real_federation, synthetic_federation
from fedctr.federation.demo.scoring_check import score_with_live_server
from fedctr.federation.simulation import run_simulation
from fedctr.federation.workspace import PartnerSetup, Workspace, create_workspace
from fedctr.models import model_config
from fedctr.privacy.dpsgd import DEFAULT_IMPLEMENTATION
from fedctr.privacy.secagg import SecAggSettings
from fedctr.server.platform.publishing import SUMMARY_FILE
from fedctr.server.platform.rounds import failure_text, read_round_log
from fedctr.server.platform.strategies.registry import strategy_config
from fedctr.server.registry import verify_card

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What ``fedctr demo`` runs; defaults are the README's demo."""

    workdir: Path
    data: Path | None = None
    spec: Path | None = None
    partners: int = 3
    split_column: str | None = None
    rounds: int = 5
    model: str = "deepfm"
    strategy: str = "fedavg"
    min_partners: int = 2
    epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 5.0
    # Declared Poisson rate and expected batch (the generated partners hold ~1,000-1,200
    # training rows); never derived from the rows, see fedctr.privacy.wire.
    sample_rate: float = 0.25
    batch_size: int = 300
    local_epochs: int = 1
    learning_rate: float = 0.01
    dp_implementation: str = DEFAULT_IMPLEMENTATION
    # Unit of privacy of every partner: "example" (one row) or "user" (the spec's user_key).
    unit: str = "example"
    max_rows_per_user: int = 8
    compare_centralized: bool = False
    serve: bool = True
    audit: bool = True
    # The release gate's canaries (0: no gate): publishing needs a passing one-run
    # empirical audit of every declared configuration, on the platform's test file.
    release_gate_canaries: int = 1000
    # SecAgg+ between partners and platform: the platform sees only sums of updates.
    secure_aggregation: bool = False
    # Join this Ray cluster ("auto", "host:port") instead of starting Ray here.
    ray_address: str | None = None


def _federation_data(opts: DemoOptions) -> FederationData:
    data_dir = opts.workdir / "data"
    if opts.data is None:
        return synthetic_federation(data_dir)
    return real_federation(
        opts.data,
        data_dir,
        spec_file=opts.spec,
        num_partners=opts.partners,
        split_column=opts.split_column,
    )


def _training(opts: DemoOptions) -> TrainingSettings:
    return TrainingSettings(
        batch_size=opts.batch_size,
        local_epochs=opts.local_epochs,
        learning_rate=opts.learning_rate,
        optimizer="adam",
    )


def build_demo_workspace(opts: DemoOptions, data: FederationData) -> Workspace:
    privacy = PrivacySettings(
        epsilon=opts.epsilon,
        delta=opts.delta,
        planned_rounds=opts.rounds,
        sample_rate=opts.sample_rate,
        max_grad_norm=opts.max_grad_norm,
        dp_implementation=opts.dp_implementation,
        unit=opts.unit,
        max_rows_per_user=opts.max_rows_per_user,
    )
    partners = [
        PartnerSetup(pid, path, privacy, _training(opts)) for pid, path in data.partners.items()
    ]
    return create_workspace(
        opts.workdir / "federation",
        spec_file=data.spec_file,
        spec=data.spec,
        partners=partners,
        model=model_config(opts.model),
        strategy=strategy_config(opts.strategy, min_partners=opts.min_partners),
        rounds=opts.rounds,
        eval_data=data.eval_data,
        release_gate_canaries=(
            opts.release_gate_canaries
            if opts.release_gate_canaries > 0 and data.eval_data is not None
            else None
        ),
        secure_aggregation=SecAggSettings() if opts.secure_aggregation else None,
    )


def _follow_rounds(path: Path, rounds: int, stop: threading.Event, console: Console) -> None:
    """Progress bar fed by the platform's round log while the simulation runs."""
    with Progress(
        TextColumn("[bold]federated rounds"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=rounds)
        while not stop.wait(0.5):
            rows = read_round_log(path)
            if rows:
                last = rows[-1]
                auc = (last.get("global_metrics") or {}).get("auc")
                progress.update(
                    task, completed=len(rows), description=f"AUC {auc:.4f}" if auc else ""
                )


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def round_table(summary: dict, partner_ids: list[str]) -> Table:
    """Per round, only what the wire contract lets the platform see.

    AUC and log loss are the platform's evaluation of the DP global model on its own
    data (post-processing of DP releases, marked "DP"); ε is each partner's declared,
    data-independent accounting; failures show the error code, reason class and column.
    """
    table = Table(
        title="Federated training (DP-SGD at every partner)",
        caption="DP = post-processing of DP releases (platform data); "
        "ε = public by declaration (accounted from the partner's config)",
    )
    table.add_column("round", justify="right")
    table.add_column("AUC (DP)", justify="right")
    table.add_column("logloss (DP)", justify="right")
    for pid in partner_ids:
        table.add_column(f"ε {pid}", justify="right")
    table.add_column("not contributing (code, class, column)")
    for row in summary["rounds"]:
        glob = row.get("global_metrics") or {}
        eps = {t["partner_id"]: t["epsilon"] for t in row["train"]}
        failures = ", ".join(failure_text(f) for f in row["failures"])
        table.add_row(
            str(row["round"]),
            _fmt(glob.get("auc")),
            _fmt(glob.get("logloss")),
            *[_fmt(eps.get(pid), 3) for pid in partner_ids],
            failures or "-",
        )
    return table


def run_demo(opts: DemoOptions, console: Console) -> int:
    """Run every step; return the process exit code (non-zero if a step failed)."""
    started = time.monotonic()
    if opts.workdir.exists():
        shutil.rmtree(opts.workdir)
    opts.workdir.mkdir(parents=True)
    console.rule("[bold]fedctr demo")
    data = _federation_data(opts)
    console.print(f"[bold]data[/]: {data.description}")
    console.print(f"[bold]feature spec[/]: {data.spec.name} (hash {data.spec.spec_hash[:12]})")
    ws = build_demo_workspace(opts, data)
    console.print(
        f"[bold]partners[/]: {', '.join(ws.partner_configs)} — each with its own budget "
        f"ε={opts.epsilon}, δ={opts.delta} over {opts.rounds} rounds; model {opts.model}, "
        f"strategy {opts.strategy}"
        f"{' under SecAgg+ (the platform sees only sums)' if opts.secure_aggregation else ''}, "
        f"DP-SGD implementation {opts.dp_implementation}, "
        f"unit of privacy: {opts.unit}"
    )

    run_id = "demo-run"
    run_dir = ws.runs / run_id
    stop = threading.Event()
    follower = threading.Thread(
        target=_follow_rounds,
        args=(run_dir / "rounds.jsonl", opts.rounds, stop, console),
        daemon=True,
    )
    follower.start()
    failure: FedctrError | None = None
    try:
        run_simulation(
            platform_config=ws.platform_config,
            partner_configs=list(ws.partner_configs.values()),
            run_id=run_id,
            flwr_home=opts.workdir / "flwr-home",
            ray_address=opts.ray_address,
        )
    except FedctrError as exc:
        failure = exc
    finally:
        stop.set()
        follower.join()
    summary_path = run_dir / SUMMARY_FILE
    if failure is not None or not summary_path.exists():
        rows = read_round_log(run_dir / "rounds.jsonl")
        if rows:  # why it failed: each partner's error code, reason class and column
            console.print(round_table({"rounds": rows}, list(ws.partner_configs)))
        console.print(
            f"[red]the federation did not publish a model[/]: {failure or 'no summary'}\n"
            "(each partner's error code, reason class and spec column are above; row "
            f"numbers and values stay in the partner's own log; platform log: {run_dir})"
        )
        return 1
    summary = json.loads(summary_path.read_text())
    console.print(round_table(summary, list(ws.partner_configs)))
    console.print(
        "Partners' row counts, losses, skipped bad rows and timings stay in their own "
        "node logs (Ray session logs here); see README 'Privacy boundary'."
    )

    model_dir = Path(summary["model_path"])
    from fedctr.privacy.signing import load_public_key

    verify_card(model_dir, load_public_key(ws.platform_public_key))
    console.print(
        f"[bold green]published[/] {summary['model_version']} → {model_dir}\n"
        f"  signature verified with {ws.platform_public_key}"
    )
    status = 0
    if opts.compare_centralized and data.eval_data is not None:
        central = centralized_baseline(
            spec=data.spec,
            model=model_config(opts.model),
            train_files=data.partners.values(),
            eval_file=data.eval_data,
            max_epochs=opts.rounds * opts.local_epochs,
            training=_training(opts),
        )
        final = summary["rounds"][-1].get("global_metrics") or {}
        choice = central.choice
        console.print(
            f"[bold]global AUC on {data.eval_data.name}[/]: federated DP (ε={opts.epsilon}) "
            f"{_fmt(final.get('auc'))} vs centralized non-private {_fmt(central.test.auc)} "
            f"(gap {_fmt(central.test.auc - final.get('auc', math.nan))}); the baseline's "
            f"learning rate {choice.learning_rate:g} and {choice.epochs} epoch(s) were chosen "
            f"on a validation split of the pooled training rows (AUC "
            f"{choice.validation_auc:.4f}), never on {data.eval_data.name}"
        )
    if opts.serve and data.eval_data is not None:
        status |= score_with_live_server(ws, data, console)
    if opts.audit:
        status |= run_demo_audit(ws, opts.workdir / "audit", console)
    console.print(
        f"\n[bold]done in {time.monotonic() - started:.0f} s.[/] Model: {model_dir}\n"
        f"Score it:  fedctr serve --registry {ws.registry} --public-key {ws.platform_public_key}\n"
        f"Verify it: fedctr verify-model {model_dir} --public-key {ws.platform_public_key}"
    )
    return status


__all__ = ["DemoOptions", "build_demo_workspace", "round_table", "run_demo"]
