"""User-level vs example-level DP on user-keyed ad logs: utility, rows per user, and the
group privacy that example-level DP really gives a heavy user.

    .venv/bin/python bench/bench_user_level.py --out /work/notes/bench-user-level.md  # full
    .venv/bin/python bench/bench_user_level.py --quick                                # < 1 min

Why: example-level DP protects one row. A person with many rows is protected only by
group privacy, ``(k eps, k e^{(k-1) eps} delta)`` for k rows
(:func:`fedctr.privacy.unit.group_privacy`), whose delta reaches 1 (no guarantee at all)
after a handful of rows at the epsilons people use. User-level DP (``[privacy] unit =
"user"``) samples users, keeps at most ``k`` rows of each and clips each user's summed
gradient, so every user gets the stated (epsilon, delta) whatever its row count. This
bench shows what that costs in AUC, on both kinds of data the issue names:

* ``talkingdata``: the real TalkingData AdTracking sample (100k clicks, 0.23% downloads),
  read by ``bench.utility.datasets`` with the built-in spec (user = ip + device + os; its
  ``[source]`` maps the damaged first header name ``..ip``, so the file is read in place):
  test = 20% of the users. Validation: 15% of the other users; the rest split among 3
  partners by user.
* ``zipf-demo``: the generated demo federation (``fedctr.federation.demo.synthetic``, spec
  ``models/specs/demo.toml`` with ``user_key = ["user_id"]``): 3 non-IID partners with a
  Zipf(2) number of rows per user; test = the platform's own test file (other users);
  validation: 15% of each partner's users.

No user is in two of (partners, validation, test), and each user is at one partner, so a
partner's user-level guarantee covers all of that user's training rows.

For every dataset and epsilon: the non-private federation, example-level DP-SGD, and
user-level DP-SGD for each ``k`` in ``--max-rows``; the same partners, rounds, clipping
norm, Poisson rate (``1/batches_per_epoch`` of the rows, or of the users) and the same
(epsilon, delta), delta = 1/(10 n) of the smallest partner's rows (also below 1/n of its
users). The declared expected batch is the expected rows per step for both units (a
user-level partner counts only the rows its users keep), so the averaged gradient has
the same scale. Every arm is tuned alike, per seed, on the validation users
(``bench.utility.selection``'s early stopping, as ``bench_utility.py`` does): learning
rate x ``LR_GRID`` of the recipe's (the same six trials for every arm) and the round to
stop at; the test users only score the chosen model. The selection's own privacy cost
is not accounted (for any arm).

Federated rounds run in this process through ``bench/utility/inprocess.py`` (the partner
node's own noise calibration, budget check, user sampler and DP-SGD implementation).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_dpsgd import kept_rows  # noqa: E402
from bench.utility.datasets import DATA_ROOT, HOLDOUT_SEED, load_dataset, split_by_user  # noqa: E402
from bench.utility.inprocess import run_federated  # noqa: E402
from bench.utility.recipes import FederatedRecipe, recipe_for  # noqa: E402
from bench.utility.report import bootstrap_auc_gap_se  # noqa: E402
from bench.utility.runner import delta_for  # noqa: E402
from bench.utility.selection import (  # noqa: E402
    VALIDATION_FRACTION,
    BestOnValidation,
    Choice,
    learning_rates,
)
from fedctr.clients.config import PrivacySettings  # noqa: E402
from fedctr.clients.holdout import seed_key  # noqa: E402
from fedctr.federation.demo.synthetic import DEFAULT_PARTNERS, generate_federation  # noqa: E402
from fedctr.models import (  # noqa: E402
    FeatureSpec,
    ModelConfig,
    build_model,
    builtin_spec_path,
    load_spec,
    log_loss,
    predict_proba,
    roc_auc,
)
from fedctr.models.logs.reader import EncodedData, read_partner_log  # noqa: E402
from fedctr.privacy.dpsgd import DEFAULT_IMPLEMENTATION  # noqa: E402
from fedctr.privacy.rdp_memo import memoize_opacus_rdp  # noqa: E402
from fedctr.privacy.unit import UnitOfPrivacy, group_privacy  # noqa: E402
from fedctr.server.platform.strategies.registry import strategy_from_table  # noqa: E402

logger = logging.getLogger("bench_user_level")

PARTNERS = 3
# Public benchmark keys (a partner's own splits use its secret key).
VALIDATION_KEY = seed_key(HOLDOUT_SEED + 3)
QUICK_KEY = seed_key(HOLDOUT_SEED + 4)
PARTNER_SEED = HOLDOUT_SEED + 5
QUICK_ROUNDS = 2  # --quick: a smoke run, not a measurement
# Learning rate x these of each arm's recipe value: wider than bench_utility's LR_FACTORS,
# whose edges bound the choice here (DP arms chose its lowest rate, non-private its highest).
LR_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


# ---- data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserKeyedData:
    """Partners' training rows, validation and test rows, no user in two of them."""

    name: str
    spec: FeatureSpec
    spec_path: Path
    partners: list[EncodedData]
    validation: EncodedData
    test: EncodedData
    all_users: np.ndarray  # every row's user in the whole dataset (for the distribution)
    note: str

    @property
    def delta(self) -> float:
        """One delta for every private arm, example- or user-level: 1/(10 n) of the
        smallest partner's rows (below 1/n of its users too)."""
        return delta_for(min(len(p) for p in self.partners))

    @property
    def train_users(self) -> np.ndarray:
        return np.concatenate([_users(p) for p in self.partners])


def _users(data: EncodedData) -> np.ndarray:
    if data.users is None:
        raise ValueError("the spec names no user_key: rows carry no user")
    return data.users


def partition_users(data: EncodedData, parts: int, *, seed: int) -> list[EncodedData]:
    """``parts`` partners, each user (and all its rows) at exactly one of them."""
    _, inverse = np.unique(_users(data), return_inverse=True)
    owner = np.random.default_rng(seed).integers(0, parts, inverse.max() + 1)[inverse.ravel()]
    return [data.take(np.flatnonzero(owner == k)) for k in range(parts)]


def concat(parts: Iterable[EncodedData]) -> EncodedData:
    """Rows of several parts, in order (users kept)."""
    items = list(parts)
    return EncodedData(
        *(
            np.concatenate([getattr(p, f) for p in items])
            for f in ("x_cat", "x_num", "x_dense", "y")
        ),
        users=np.concatenate([_users(p) for p in items]),
    )


def load_talkingdata(root: Path, *, user_share: float | None) -> UserKeyedData:
    """The real sample, split by user; ``user_share`` keeps that share of users (quick)."""
    data = load_dataset("talkingdata", root=root)
    train, test = data.train, data.test
    if user_share is not None:
        _, train = split_by_user(train, user_share, key=QUICK_KEY)
        _, test = split_by_user(test, user_share, key=QUICK_KEY)
    train, validation = split_by_user(train, VALIDATION_FRACTION, key=VALIDATION_KEY)
    return UserKeyedData(
        name="talkingdata",
        spec=data.spec,
        spec_path=data.spec_path,
        partners=partition_users(train, PARTNERS, seed=PARTNER_SEED),
        validation=validation,
        test=test,
        all_users=np.concatenate([_users(train), _users(validation), _users(test)]),
        note=(
            f"{data.note}; validation {VALIDATION_FRACTION:.0%} of the other users; "
            f"{PARTNERS} partners by user"
            + ("" if user_share is None else f"; quick: {user_share:.0%} of the users")
        ),
    )


def load_zipf_demo(workdir: Path, *, scale: float) -> UserKeyedData:
    """The generated demo federation (Zipf(2) rows per user), ``scale`` x its rows."""
    profiles = tuple(replace(p, rows=int(p.rows * scale)) for p in DEFAULT_PARTNERS)
    paths, test_path = generate_federation(
        workdir / "zipf-demo", partners=profiles, platform_test_rows=int(6000 * scale)
    )
    spec_path = builtin_spec_path("demo")
    spec = load_spec(spec_path)
    logs = [read_partner_log(path, spec) for path in paths.values()]
    splits = [split_by_user(log, VALIDATION_FRACTION, key=VALIDATION_KEY) for log in logs]
    return UserKeyedData(
        name="zipf-demo",
        spec=spec,
        spec_path=spec_path,
        partners=[train for train, _ in splits],
        validation=concat(held for _, held in splits),
        test=read_partner_log(test_path, spec),
        all_users=np.concatenate([_users(log) for log in logs]),
        note=(
            "fedctr.federation.demo.synthetic.generate_federation (seed 7, "
            f"{' / '.join(f'{p.partner_id} {p.rows:,}' for p in profiles)} rows), spec "
            "models/specs/demo.toml; test = platform-test.parquet (other users); "
            f"validation {VALIDATION_FRACTION:.0%} of each partner's users"
        ),
    )


# ---- rows per user --------------------------------------------------------------------------


@dataclass(frozen=True)
class UserStats:
    """The distribution of rows per user of one set of rows."""

    rows: int
    users: int
    mean: float
    median: int  # percentiles by nearest rank: a real user's row count
    p90: int
    p99: int
    max: int
    top1_share: float  # share of the rows held by the 1% of users with the most rows
    kept: dict[int, float]  # k -> share of rows a user-level run with bound k trains on

    @classmethod
    def of(cls, users: np.ndarray, bounds: Iterable[int]) -> UserStats:
        _, counts = np.unique(users, return_counts=True)
        top = np.sort(counts)[::-1][: max(1, len(counts) // 100)]
        ids = torch.from_numpy(users.astype(np.int64))
        return cls(
            rows=len(users),
            users=len(counts),
            mean=float(counts.mean()),
            median=_rank(counts, 50),
            p90=_rank(counts, 90),
            p99=_rank(counts, 99),
            max=int(counts.max()),
            top1_share=float(top.sum() / len(users)),
            kept={k: kept_rows(ids, k) / len(users) for k in bounds},
        )

    def counts_at(self) -> dict[str, int]:
        """The row counts group privacy is stated for: the median, p99 and heaviest user."""
        return {"p50": self.median, "p99": self.p99, "max": self.max}


def _rank(counts: np.ndarray, q: float) -> int:
    return int(np.percentile(counts, q, method="inverted_cdf"))


def distribution_table(stats: dict[tuple[str, str], UserStats], bounds: list[int]) -> str:
    kept_head = " | ".join(f"rows kept k={k}" for k in bounds)
    lines = [
        f"| dataset | rows of | rows | users | mean | median | p90 | p99 | max "
        f"| top 1% users' rows | {kept_head} |",
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(bounds),
    ]
    for (name, part), s in stats.items():
        kept = " | ".join(f"{s.kept[k]:.1%}" for k in bounds)
        lines.append(
            f"| {name} | {part} | {s.rows:,} | {s.users:,} | {s.mean:.2f} | {s.median} "
            f"| {s.p90} | {s.p99} | {s.max} | {s.top1_share:.1%} | {kept} |"
        )
    return "\n".join(lines) + "\n"


# ---- runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One row of the utility table before tuning."""

    epsilon: float | None  # None: non-private
    unit: UnitOfPrivacy

    @property
    def key(self) -> str:
        if self.epsilon is None:
            return "non-private"
        unit = f"user k={self.unit.max_rows}" if self.unit.is_user else "example"
        return f"{unit} eps={self.epsilon:g}"


@dataclass(frozen=True)
class Run:
    """One seed of one arm: the chosen model's test scores and what it spent."""

    choice: Choice
    auc: float
    logloss: float
    probs: np.ndarray
    epsilon: float | None  # the worst partner's, after all planned rounds
    noise_multiplier: float | None
    seconds: float


def recipe_of(
    data: UserKeyedData, model_name: str, method: Method, *, quick: bool
) -> FederatedRecipe:
    """bench_utility's recipe for the dataset and model (its default where it names none);
    ``quick`` cuts the rounds (a smoke run)."""
    recipe = recipe_for(data.name, model_name)
    base = recipe.federated if method.epsilon is None else recipe.private
    return replace(base, rounds=min(base.rounds, QUICK_ROUNDS)) if quick else base


def run_arm(
    data: UserKeyedData,
    model_name: str,
    method: Method,
    base: FederatedRecipe,
    seed: int,
    *,
    rates: list[float],
) -> Run:
    """Train the arm at every learning rate in ``rates``, keep the best (rate, round) on
    the validation users, score it on the test users."""
    started = time.monotonic()
    unit = method.unit
    private = method.epsilon is not None
    privacy = PrivacySettings(
        epsilon=method.epsilon if private else 8.0,
        delta=data.delta,
        planned_rounds=base.rounds,
        **({"sample_rate": base.sample_rate} if private else {}),
        max_grad_norm=base.max_grad_norm,
        accountant="rdp",
        dp_implementation=DEFAULT_IMPLEMENTATION,
        unit=unit.kind.value,
        **({"max_rows_per_user": unit.max_rows} if unit.is_user else {}),
        enabled=private,
    )
    # declared expected batch: the rows a step holds in expectation (a user keeps <= k)
    rows = [
        kept_rows(torch.from_numpy(_users(p)), unit.max_rows) if unit.is_user else len(p)
        for p in data.partners
    ]
    config = ModelConfig.from_dict({"name": model_name})
    chooser = BestOnValidation(data.validation)
    epsilon = sigma = None
    for lr in rates:
        fed = replace(base, learning_rate=lr)
        result = run_federated(
            spec=data.spec,
            spec_path=data.spec_path,
            model_config=config,
            partners=data.partners,
            privacy=privacy,
            trainings=[fed.training(n, seed=seed) for n in rows],
            strategy=strategy_from_table(fed.strategy, {"min_partners": PARTNERS}),
            rounds=fed.rounds,
            seed=seed,
            on_round=chooser.on_round(build_model(data.spec, config), lr),
        )
        if result.refusals:
            raise RuntimeError(f"{data.name} {method.key}: {result.refusals} rounds refused")
        if private:
            if not result.epsilon <= method.epsilon + 1e-6:  # type: ignore[operator]
                raise RuntimeError(f"{method.key}: spent epsilon {result.epsilon} > budget")
            epsilon, sigma = result.epsilon, result.noise_multiplier
    model = build_model(data.spec, config)
    choice = chooser.best(model)
    x_cat, x_num, x_dense, y = data.test.tensors()
    probs = predict_proba(model, x_cat, x_num, x_dense)
    return Run(
        choice=choice,
        auc=roc_auc(y.numpy(), probs),
        logloss=log_loss(y.numpy(), probs),
        probs=probs,
        epsilon=epsilon,
        noise_multiplier=sigma,
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class Cell:
    """One arm over seeds."""

    dataset: str
    method: Method
    runs: list[Run]
    delta: float | None
    rates: list[float]  # the learning rates tried

    def metric(self, name: str) -> tuple[float, float]:
        values = np.array([getattr(r, name) for r in self.runs])
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def chosen(self, rates: list[float]) -> str:
        """Each seed's learning rate and stop round; ``*`` where the rate is a grid edge."""
        edges = {min(rates), max(rates)} if len(rates) > 1 else set()
        return ", ".join(
            f"{r.choice.learning_rate:g}{'*' if r.choice.learning_rate in edges else ''}"
            f"/r{r.choice.stop}"
            for r in self.runs
        )


def run_cell(
    data: UserKeyedData,
    model_name: str,
    method: Method,
    *,
    seeds: int,
    quick: bool,
    factors: tuple[float, ...],
) -> Cell:
    """``seeds`` runs of one arm, each tuned on its own (selection noise is in the spread)."""
    base = recipe_of(data, model_name, method, quick=quick)
    rates = learning_rates(base.learning_rate, factors)
    runs = []
    for seed in range(seeds):
        run = run_arm(data, model_name, method, base, seed, rates=rates)
        runs.append(run)
        logger.info(
            "%s %-20s seed %d: lr %g round %d (validation AUC %.4f) test AUC %.4f (%.0f s)",
            data.name,
            method.key,
            seed,
            run.choice.learning_rate,
            run.choice.stop,
            run.choice.validation_auc,
            run.auc,
            run.seconds,
        )
    private = method.epsilon is not None
    return Cell(data.name, method, runs, data.delta if private else None, rates)


def utility_table(cells: list[Cell], test_labels: dict[str, np.ndarray]) -> str:
    """One line per arm; gaps against the dataset's non-private arm, paired by seed."""
    lines = [
        "| dataset | setting | ε budget, spent by R rounds (δ) | σ | chosen lr/round per seed "
        "| test AUC | ΔAUC vs non-private | gap s.e. (test) | test log loss | s/seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {c.dataset: c for c in cells if c.method.epsilon is None}
    for c in cells:
        auc, ll = c.metric("auc"), c.metric("logloss")
        ref = base.get(c.dataset)
        gap = se = eps = sigma = "-"
        if c.method.epsilon is not None:
            spent = max(r.epsilon for r in c.runs if r.epsilon is not None)
            eps = f"{spent:.2f} ({c.delta:.1e})"
            sigma = f"{max(r.noise_multiplier or 0.0 for r in c.runs):.2f}"
            if ref is not None:
                gaps = [a.auc - b.auc for a, b in zip(c.runs, ref.runs, strict=False)]
                gap = f"{np.mean(gaps):+.4f}"
                y = test_labels[c.dataset]
                se = f"{bootstrap_auc_gap_se(y, c.runs[0].probs, ref.runs[0].probs):.4f}"
        lines.append(
            f"| {c.dataset} | {c.method.key} | {eps} | {sigma} | {c.chosen(c.rates)} "
            f"| {auc[0]:.4f} ± {auc[1]:.4f} | {gap} | {se} | {ll[0]:.4f} ± {ll[1]:.4f} "
            f"| {c.metric('seconds')[0]:.0f} |"
        )
    return "\n".join(lines) + "\n"


# ---- group privacy --------------------------------------------------------------------------


def group_privacy_table(
    datasets: list[UserKeyedData], epsilons: list[float], bounds: list[int]
) -> str:
    """What example-level (eps, delta) promises the median, p99 and heaviest training user,
    the largest group it still says something about, and how many users it promises
    nothing (delta_k saturated at 1)."""
    lines = [
        "| dataset | ε (δ) per row | p50 user: rows → (ε_k, δ_k) | p99 user | heaviest user "
        "| largest k with δ_k < 1 | users with δ_k = 1 (their rows) | user-level DP, any user |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for data in datasets:
        users = data.train_users
        _, counts = np.unique(users, return_counts=True)
        stats = UserStats.of(users, bounds)
        delta = data.delta
        for eps in epsilons:
            vacuous = np.array([group_privacy(eps, delta, int(c))[1] >= 1.0 for c in counts])
            cells = []
            for k in stats.counts_at().values():
                eps_k, delta_k = group_privacy(eps, delta, k)
                cells.append(f"{k} → ({eps_k:g}, {_delta_text(delta_k)})")
            lines.append(
                f"| {data.name} | {eps:g} ({delta:.1e}) | {' | '.join(cells)} "
                f"| {_largest_group(eps, delta)} "
                f"| {int(vacuous.sum()):,} of {len(counts):,} "
                f"({counts[vacuous].sum() / counts.sum():.1%} of rows) "
                f"| ({eps:g}, {delta:.1e}) |"
            )
    return "\n".join(lines) + "\n"


def _largest_group(epsilon: float, delta: float) -> int:
    """The most rows whose group-privacy delta is still below 1."""
    k = 1
    while group_privacy(epsilon, delta, k + 1)[1] < 1.0:
        k += 1
    return k


def _delta_text(delta: float) -> str:
    return "**1**" if delta >= 1.0 else f"{delta:.1e}"


# ---- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data, one setting (< 1 min)")
    p.add_argument("--datasets", nargs="+", choices=("talkingdata", "zipf-demo"))
    p.add_argument("--epsilons", nargs="+", type=float, help="default 1 3 8 (quick: 3)")
    p.add_argument("--max-rows", nargs="+", type=int, help="user-level k, default 1 4 8 16")
    p.add_argument("--seeds", type=int, help="test seeds per row (default 3, quick 1)")
    p.add_argument(
        "--lr-factors",
        nargs="+",
        type=float,
        help=f"learning rates tried, x the recipe's (default {' '.join(map(str, LR_GRID))})",
    )
    p.add_argument("--model", default="fm", help="a registered model (default fm)")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT, help="the shared data folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    return p.parse_args(argv)


def _quiet() -> None:
    """Tables on stdout, progress on stderr; Flower's per-round INFO lines dropped."""
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    logging.getLogger("fedctr").setLevel(logging.WARNING)  # keeps the bad-row reports
    for name in ("flwr", "opacus"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _quiet()
    torch.set_num_threads(args.threads)
    memoize_opacus_rdp()
    quick = args.quick
    names = args.datasets or ["talkingdata", "zipf-demo"]
    epsilons = args.epsilons or ([3.0] if quick else [1.0, 3.0, 8.0])
    bounds = args.max_rows or ([8] if quick else [1, 4, 8, 16])
    seeds = args.seeds or (1 if quick else 3)
    factors = tuple(args.lr_factors or ((1.0,) if quick else LR_GRID))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-user-level-") as tmp:
        loaders = {
            "talkingdata": lambda: load_talkingdata(
                args.data_root, user_share=0.25 if quick else None
            ),
            "zipf-demo": lambda: load_zipf_demo(Path(tmp), scale=0.25 if quick else 1.0),
        }
        datasets = [loaders[name]() for name in names]
        stats: dict[tuple[str, str], UserStats] = {}
        for data in datasets:
            stats[(data.name, "all")] = UserStats.of(data.all_users, bounds)
            stats[(data.name, "training partners")] = UserStats.of(data.train_users, bounds)
            logger.info(
                "%s: %s train rows at %d partners, %s validation, %s test rows (%d positives)",
                data.name,
                f"{sum(len(p) for p in data.partners):,}",
                len(data.partners),
                f"{len(data.validation):,}",
                f"{len(data.test):,}",
                int(data.test.y.sum()),
            )
        methods = [Method(None, UnitOfPrivacy.example())]
        for eps in epsilons:
            methods.append(Method(eps, UnitOfPrivacy.example()))
            methods += [Method(eps, UnitOfPrivacy.user(k)) for k in bounds]
        cells = [
            run_cell(data, args.model, m, seeds=seeds, quick=quick, factors=factors)
            for data in datasets
            for m in methods
        ]
        labels = {data.name: data.test.y for data in datasets}
        command = " ".join(argv if argv is not None else sys.argv[1:])
        report = render(
            args, command, datasets, stats, cells, labels, epsilons, seeds, factors, started
        )
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def _describe(data: UserKeyedData, model_name: str, *, quick: bool) -> str:
    """The dataset line of the report: splits, sizes and the recipes the arms start from."""
    plain = recipe_of(data, model_name, Method(None, UnitOfPrivacy.example()), quick=quick)
    dp = recipe_of(data, model_name, Method(1.0, UnitOfPrivacy.example()), quick=quick)
    return (
        f"{data.name}: {data.note}. {sum(len(p) for p in data.partners):,} training rows "
        f"({', '.join(f'{len(p):,}' for p in data.partners)}), {len(data.validation):,} "
        f"validation rows ({int(data.validation.y.sum())} positives), {len(data.test):,} "
        f"test rows ({int(data.test.y.sum())} positives). Non-private: {plain.rounds} rounds "
        f"of local Adam, batch {plain.batch_size or 'rows/' + str(plain.batches_per_epoch)}, "
        f"lr {plain.learning_rate:g}; DP: {dp.rounds} rounds, Poisson rate "
        f"1/{dp.batches_per_epoch} of the rows (example) or users (user), "
        f"C = {dp.max_grad_norm:g}, lr {dp.learning_rate:g}"
    )


def render(
    args: argparse.Namespace,
    command: str,
    datasets: list[UserKeyedData],
    stats: dict[tuple[str, str], UserStats],
    cells: list[Cell],
    labels: dict[str, np.ndarray],
    epsilons: list[float],
    seeds: int,
    factors: tuple[float, ...],
    started: float,
) -> str:
    """The markdown report: data, rows per user, utility, group privacy."""
    notes = "\n".join(f"- {_describe(d, args.model, quick=args.quick)}" for d in datasets)
    bounds = sorted({k for stat in stats.values() for k in stat.kept})
    tuned = f"learning rate x {'/'.join(f'{f:g}' for f in factors)} of the recipe's"
    return (
        f"# User-level vs example-level DP ({args.model}, {PARTNERS} partners, fedavg)\n\n"
        f"{notes}\n\n"
        "## Rows per user\n\n"
        "'rows kept k' is the share of rows a user-level run with bound k trains on "
        "(each user keeps at most k, chosen once).\n\n"
        f"{distribution_table(stats, bounds)}\n"
        "## Utility at the same (ε, δ)\n\n"
        f"{seeds} seed(s) per row, each tuned alike on the validation users ({tuned}, and "
        "the round to stop at); the chosen model scored on the test "
        "users: mean ± std over seeds; `*` marks a learning rate at an edge of the grid. ε is "
        "what the planned rounds spend (a model stopped "
        "earlier spent less). ΔAUC is paired by seed; gap s.e. is the paired bootstrap over "
        "test rows of seed 0 (how small a gap the test split resolves).\n\n"
        f"{utility_table(cells, labels)}\n"
        "## What example-level DP promises a user (group privacy)\n\n"
        "A user with k rows under example-level (ε, δ)-DP gets (kε, k e^{(k-1)ε} δ) "
        "(fedctr.privacy.unit.group_privacy; δ_k is capped at 1, shown **1**: the pair then "
        "promises nothing at all, whatever ε_k says). It is the generic bound, the best "
        "that can be *promised* from the per-row (ε, δ) alone, not a measured leak. "
        "Counts are of the training partners' rows; user-level DP gives every user the "
        "stated (ε, δ) whatever its rows (rows beyond k are not used).\n\n"
        f"{group_privacy_table(datasets, epsilons, bounds)}\n"
        f"command: .venv/bin/python bench/bench_user_level.py {command}\n"
        f"took {(time.monotonic() - started) / 60:.1f} min on {torch.get_num_threads()} "
        "torch thread(s)\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
