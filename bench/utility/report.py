"""Turn per-seed results into the table: mean ± std over seeds, gaps to centralized.

The gap of a row is paired by seed (row seed s minus centralized seed s), then
averaged. ``gap s.e.`` is the test-sampling error of that gap for seed 0: a paired
bootstrap over test rows (same resample for both models), which says how small a
gap the dataset's test split can resolve at all.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from bench.utility.runner import RunResult
from bench.utility.scenarios import BY_KEY

GOALS = {8.0: 0.005, 3.0: 0.01, 1.0: 0.02}  # epsilon -> allowed AUC gap (issue 6)


@functools.lru_cache(maxsize=1)  # rows arrive grouped by dataset: one test split at a time
def bootstrap_weights(n: int, *, resamples: int = 200, seed: int = 0) -> np.ndarray:
    """``[resamples, n]`` row counts of paired bootstrap resamples of ``n`` test rows."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])


def bootstrap_auc_gap_se(y: np.ndarray, p_row: np.ndarray, p_ref: np.ndarray) -> float:
    """Std of AUC(row) - AUC(ref) over paired bootstrap resamples of the test rows."""
    weights = bootstrap_weights(len(y))
    return _gap_se(y, p_row, _weighted_auc(y, p_ref, weights))


def _gap_se(y: np.ndarray, p_row: np.ndarray, ref_aucs: np.ndarray) -> float:
    return float((_weighted_auc(y, p_row, bootstrap_weights(len(y))) - ref_aucs).std(ddof=1))


def _weighted_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties averaged) under each row of ``weights`` [R, n], in O(R n)."""
    order = np.argsort(scores, kind="mergesort")
    s, yy, w = scores[order], y[order].astype(bool), weights[:, order].astype(np.float64)
    _, starts = np.unique(s, return_index=True)
    pos = np.add.reduceat(np.where(yy, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(yy, 0.0, w), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    return (pos * (below + 0.5 * neg)).sum(axis=1) / np.where(total > 0, total, np.nan)


@dataclass(frozen=True)
class Row:
    dataset: str
    model: str
    scenario: str
    auc: tuple[float, float]
    logloss: tuple[float, float]
    auc_gap: tuple[float, float]
    logloss_gap: tuple[float, float]
    gap_se: float | None
    epsilon: float | None
    delta: float | None
    noise_multiplier: float | None
    seconds: float
    seeds: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(results: list[RunResult], test_labels: dict[str, np.ndarray]) -> list[Row]:
    """One row per (dataset, model, scenario), in run order."""
    groups: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        groups[(r.dataset, r.model, r.scenario)].append(r)
    rows = []
    ref_aucs: dict[tuple[str, str, int], np.ndarray] = {}  # per central run
    for (ds, model, key), runs in groups.items():
        central = {r.seed: r for r in groups.get((ds, model, "central"), [])}
        paired = [r for r in runs if r.seed in central]
        auc_gaps = [r.auc - central[r.seed].auc for r in paired]
        ll_gaps = [r.logloss - central[r.seed].logloss for r in paired]
        gap_se = None
        first = min(runs, key=lambda r: r.seed)
        if key != "central" and first.seed in central:
            y, ref_key = test_labels[ds], (ds, model, first.seed)
            if ref_key not in ref_aucs:  # the central model's resampled AUCs, once
                ref = central[first.seed].probs
                ref_aucs[ref_key] = _weighted_auc(y, ref, bootstrap_weights(len(y)))
            gap_se = _gap_se(y, first.probs, ref_aucs[ref_key])
        eps = [r.epsilon for r in runs if r.epsilon is not None]
        sig = [r.noise_multiplier for r in runs if r.noise_multiplier is not None]
        rows.append(
            Row(
                dataset=ds,
                model=model,
                scenario=key,
                auc=_mean_std([r.auc for r in runs]),
                logloss=_mean_std([r.logloss for r in runs]),
                auc_gap=_mean_std(auc_gaps) if auc_gaps else (math.nan, math.nan),
                logloss_gap=_mean_std(ll_gaps) if ll_gaps else (math.nan, math.nan),
                gap_se=gap_se,
                epsilon=max(eps) if eps else None,
                delta=max(r.delta for r in runs if r.delta is not None) if eps else None,
                noise_multiplier=max(sig) if sig else None,
                seconds=float(np.mean([r.seconds for r in runs])),
                seeds=len(runs),
            )
        )
    return rows


def _signed(mean: float, digits: int = 4) -> str:
    return "-" if math.isnan(mean) else f"{mean:+.{digits}f}"


def _pm(value: tuple[float, float], digits: int = 4, signed: bool = False) -> str:
    mean, std = value
    if math.isnan(mean):
        return "-"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{fmt.format(mean)} ± {std:.{digits}f}"


def markdown_table(rows: list[Row]) -> str:
    head = (
        "| dataset | model | setting | AUC | ΔAUC vs central | gap s.e. (test) | logloss "
        "| Δlogloss | ε spent (δ) | σ | s/run |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        central = r.scenario == "central"
        eps = "-" if r.epsilon is None else f"{r.epsilon:.2f} ({r.delta:.1e})"
        lines.append(
            f"| {r.dataset} | {r.model} | {BY_KEY[r.scenario].label} | {_pm(r.auc)} "
            f"| {'-' if central else _pm(r.auc_gap, signed=True)} "
            f"| {'-' if r.gap_se is None else f'{r.gap_se:.4f}'} | {_pm(r.logloss)} "
            f"| {'-' if central else _pm(r.logloss_gap, signed=True)} | {eps} "
            f"| {'-' if r.noise_multiplier is None else f'{r.noise_multiplier:.2f}'} "
            f"| {r.seconds:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def gap_pivot(rows: list[Row]) -> str:
    """One line per (dataset, model): centralized AUC, then each setting's ΔAUC (mean
    over seeds, paired by seed); the compact form of :func:`markdown_table`."""
    cells = {(r.dataset, r.model, r.scenario): r for r in rows}
    pairs = list(dict.fromkeys((r.dataset, r.model) for r in rows))
    run = {r.scenario for r in rows} - {"central"}
    present = [
        (sc.key, sc.short_label)
        for sc in sorted((BY_KEY[k] for k in run), key=lambda sc: sc.pivot_order())
    ]
    head = (
        "| dataset | model | central AUC | "
        + " | ".join(label for _, label in present)
        + " |\n|---|---|---|"
        + "---|" * len(present)
        + "\n"
    )
    lines = []
    for ds, model in pairs:
        central = cells.get((ds, model, "central"))
        gaps = [cells.get((ds, model, k)) for k, _ in present]
        lines.append(
            f"| {ds} | {model} | {_pm(central.auc) if central else '-'} | "
            + " | ".join("-" if g is None else _signed(g.auc_gap[0]) for g in gaps)
            + " |"
        )
    return head + "\n".join(lines) + "\n"


def decomposition(rows: list[Row]) -> str:
    """Per (dataset, model, split): central -> federated non-private -> federated DP.

    The two parts of each DP gap: what federation (and its recipe) costs, and what the
    noise costs on top, per epsilon.
    """
    cells = {(r.dataset, r.model, r.scenario): r for r in rows}
    out = [
        "| dataset | model | partners | central AUC | federation cost | DP cost by ε |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        sc = BY_KEY[r.scenario]
        if sc.centralized or sc.epsilon is not None:
            continue
        central = cells.get((r.dataset, r.model, "central"))
        if central is None:
            continue
        dp = sorted(
            (BY_KEY[d.scenario].epsilon, d)
            for (ds, model, key), d in cells.items()
            if ds == r.dataset
            and model == r.model
            and BY_KEY[key].epsilon is not None
            and (BY_KEY[key].partners, BY_KEY[key].iid) == (sc.partners, sc.iid)
        )
        costs = ", ".join(
            f"ε={eps:g}: {d.auc[0] - r.auc[0]:+.4f}" for eps, d in sorted(dp, reverse=True)
        )
        out.append(
            f"| {r.dataset} | {r.model} | {sc.short_label} | {central.auc[0]:.4f} "
            f"| {r.auc[0] - central.auc[0]:+.4f} | {costs or '-'} |"
        )
    return "\n".join(out) + "\n"


def goal_summary(rows: list[Row]) -> str:
    """Per dataset and epsilon: the best model's DP gap against the issue's goal."""
    out = []
    by_ds: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_ds[r.dataset].append(r)
    for ds, ds_rows in by_ds.items():
        central_best = max((r for r in ds_rows if r.scenario == "central"), key=lambda r: r.auc[0])
        for eps, allowed in GOALS.items():
            candidates = [
                r for r in ds_rows if r.epsilon is not None and BY_KEY[r.scenario].epsilon == eps
            ]
            for split in sorted({BY_KEY[r.scenario].key.split("-", 1)[1] for r in candidates}):
                group = [r for r in candidates if r.scenario.endswith(split)]
                best = max(group, key=lambda r: r.auc[0])
                gap = best.auc[0] - central_best.auc[0]
                verdict = "meets" if gap >= -allowed else "misses"
                se = f", test s.e. {best.gap_se:.4f}" if best.gap_se is not None else ""
                out.append(
                    f"- {ds}, eps={eps:g} ({split}): best {best.model} AUC {best.auc[0]:.4f} vs "
                    f"best centralized {central_best.model} {central_best.auc[0]:.4f}: "
                    f"gap {gap:+.4f} ({verdict} the -{allowed} goal{se})"
                )
    return "\n".join(out) + "\n"


__all__ = [
    "GOALS",
    "Row",
    "bootstrap_auc_gap_se",
    "decomposition",
    "goal_summary",
    "markdown_table",
    "summarize",
]
