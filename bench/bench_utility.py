"""Utility on real ad data: what privacy and federation cost in AUC and log loss.

On the real samples in ../shared/data (Criteo attribution, Criteo Kaggle DAC 45K,
iPinYou, TalkingData) and a generated high-cardinality log, for each model, side by
side on the same test rows: centralized non-private; federated non-private (3 and 10
partners, IID and non-IID); federated DP-SGD at epsilon 8, 3 and 1 (delta = 1/(10 n)
of the smallest partner). Mean ± std over seeds, gap to centralized paired by seed.

Every arm is tuned the same way (bench/utility/selection.py): learning rate and
epochs/rounds chosen on a validation split of the training rows, the test rows read
only to score the chosen model. ``--fixed-recipes`` runs the recipes as they are.

    .venv/bin/python bench/bench_utility.py                 # full table (~1 h on 2 cores)
    .venv/bin/python bench/bench_utility.py --quick         # smoke run (< 2 min)
    .venv/bin/python bench/bench_utility.py --datasets criteo_dac_45k --models lr deepfm \
        --scenarios fed3-noniid dp1-fed3-noniid --seeds 2

Federated rounds run in this process (see bench/utility/inprocess.py): the platform's
strategy and round loop and the partners' PartnerNode.train, i.e. the same noise
calibration, DP-SGD implementation, budget checks and aggregation weights as the
Flower app, without a SuperLink or Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.utility import scenarios as sc  # noqa: E402
from bench.utility.datasets import LOADERS, load_dataset  # noqa: E402
from bench.utility.recipes import MODELS, FederatedRecipe, recipe_for, with_overrides  # noqa: E402
from bench.utility.report import (  # noqa: E402
    decomposition,
    gap_pivot,
    goal_summary,
    markdown_table,
    summarize,
)
from bench.utility.runner import RunResult, run_cell  # noqa: E402
from fedctr.privacy.dpsgd import DEFAULT_IMPLEMENTATION  # noqa: E402
from fedctr.privacy.rdp_memo import memoize_opacus_rdp  # noqa: E402

logger = logging.getLogger("bench_utility")

QUICK_ROWS = {"train": 12_000, "test": 8_000}

METHOD_NOTE = (
    "Federated rounds ran in-process: Flower's Strategy.start loop with the platform's "
    "strategy (fedctr.server.platform.strategies.registry + AccountableStrategy) over an "
    "in-process Grid; "
    "partners are fedctr.clients.node.PartnerNode.train (budget-calibrated noise over the planned "
    "rounds, budget check, DP-SGD implementation '{impl}', {accountant} accountant). Same math as "
    "the Flower app; no SuperLink/Ray, no network serialization, no ledgers or checkpoints."
)


SELECTION_NOTE = (
    "Every arm (centralized, federated, federated DP) was tuned alike: learning rate "
    "(recipe x 0.03, 0.1, 0.3, 1, 3) and epochs/rounds (early stopping) chosen on a 15% "
    "validation split of the training rows; partners split the other 85%; the test rows "
    "only score the chosen model. The selection's own privacy cost is not accounted."
)
FIXED_NOTE = "Fixed recipes (--fixed-recipes): no selection."


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for name in ("flwr", "clients", "server", "privacy", "opacus"):
        logging.getLogger(name).setLevel(logging.ERROR)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small subset, few settings (< 2 min)")
    p.add_argument("--datasets", nargs="+", choices=sorted(LOADERS))
    p.add_argument("--models", nargs="+", choices=MODELS)
    p.add_argument("--scenarios", nargs="+", choices=[s.key for s in sc.ALL])
    p.add_argument("--seeds", type=int, help="seeds per cell (default 3, quick 1)")
    p.add_argument(
        "--dp-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override the DP recipe for this run, e.g. max_grad_norm=1 batches_per_epoch=10",
    )
    p.add_argument(
        "--ddp-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override the distributed-DP (FedSGD) recipe, e.g. rounds=200 batches_per_epoch=10",
    )
    p.add_argument(
        "--fixed-recipes",
        action="store_true",
        help="no selection: train each arm with its recipe's learning rate and epochs",
    )
    p.add_argument(
        "--accountant",
        choices=("rdp", "prv"),
        default="rdp",
        help="accountant that calibrates the DP arms' noise (PRV: less noise at one epsilon)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    p.add_argument("--out", type=Path, help="write the table and raw results (JSON) here")
    return p.parse_args(argv)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``key=value`` pairs typed like the FederatedRecipe field they replace."""
    recipe = FederatedRecipe()
    defaults = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise SystemExit(f"--dp-set {item!r}: expected KEY=VALUE with KEY a recipe field")
        current = defaults[key]
        if isinstance(current, bool):
            out[key] = value.lower() in ("1", "true", "yes")
            continue
        kind = str if isinstance(current, str) else float if isinstance(current, float) else int
        out[key] = kind(value)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = parse_overrides(args.dp_set)
    ddp_overrides = parse_overrides(args.ddp_set)
    _quiet()
    torch.set_num_threads(args.threads)
    memoize_opacus_rdp()
    quick = args.quick
    datasets = args.datasets or (["criteo_attribution"] if quick else list(LOADERS))
    models = args.models or (["lr"] if quick else list(MODELS))
    scenario_list = sc.select(args.scenarios, quick=quick)
    seeds = range(args.seeds or (1 if quick else 3))
    started = time.monotonic()
    results: list[RunResult] = []
    labels = {}
    notes = {}
    for name in datasets:
        data = load_dataset(
            name,
            max_train=QUICK_ROWS["train"] if quick else None,
            max_test=QUICK_ROWS["test"] if quick else None,
        )
        labels[name] = data.test.y
        notes[name] = (
            f"{name}: {len(data.train):,} train rows (CTR {data.train.y.mean():.2%}), "
            f"{len(data.test):,} test rows ({int(data.test.y.sum())} clicks); {data.note}; "
            f"non-IID key {'+'.join(data.noniid_key)}"
        )
        logger.info("%s", notes[name])
        for model in models:
            recipe = with_overrides(recipe_for(name, model), **overrides)
            recipe = dataclasses.replace(
                recipe, distributed=dataclasses.replace(recipe.distributed, **ddp_overrides)
            )
            for scenario in scenario_list:
                for seed in seeds:
                    r = run_cell(
                        data,
                        model,
                        scenario,
                        recipe,
                        seed,
                        select=not args.fixed_recipes,
                        accountant=args.accountant,
                    )
                    results.append(r)
                    logger.info(
                        "  %-18s %-7s %-18s seed %d: AUC %.4f logloss %.4f mean p %.4f%s%s "
                        "(%.1f s)",
                        name,
                        model,
                        scenario.key,
                        seed,
                        r.auc,
                        r.logloss,
                        r.mean_prediction,
                        "" if r.epsilon is None else f" eps {r.epsilon:.2f}",
                        ""
                        if r.learning_rate is None
                        else f" [lr {r.learning_rate:g}, stop {r.stop}, val AUC "
                        f"{r.validation_auc:.4f}]",
                        r.seconds,
                    )
    elapsed = time.monotonic() - started
    rows = summarize(results, labels)
    table = markdown_table(rows)
    goals = goal_summary(rows) if any(r.epsilon is not None for r in rows) else ""
    command = "bench/bench_utility.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"{METHOD_NOTE.format(impl=DEFAULT_IMPLEMENTATION, accountant=args.accountant.upper())}\n\n"
        + "\n".join(f"- {n}" for n in notes.values())
        + f"\n\n{SELECTION_NOTE if not args.fixed_recipes else FIXED_NOTE}"
        + f" DP noise calibrated with the {args.accountant.upper()} accountant.\n"
        + f"\nΔAUC vs centralized non-private (mean over seeds):\n\n{gap_pivot(rows)}\n"
        + f"The gap decomposed (mean over seeds):\n\n{decomposition(rows)}\n"
        + f"All cells (mean ± std over seeds):\n\n{table}\n{goals}\n"
        + f"command: .venv/bin/python {command.strip()}\n"
        + f"seeds: {len(seeds)}; took {elapsed / 60:.1f} min on {torch.get_num_threads()} "
        + "torch thread(s)\n"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(
            json.dumps(
                {
                    "rows": [r.as_dict() for r in rows],
                    "runs": [r.as_dict() for r in results],
                    "seconds": elapsed,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
