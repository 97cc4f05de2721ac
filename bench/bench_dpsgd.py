"""DP-SGD cost on embedding-heavy CTR models: non-private vs Opacus ghost vs fedctr-sparse,
example-level and user-level.

Usage::

    .venv/bin/python bench/bench_dpsgd.py            # the models of issue 5 (a few minutes)
    .venv/bin/python bench/bench_dpsgd.py --quick    # small smoke run (well under a minute)

For every model, epoch times come from ONE worker process that builds the data once
and trains every implementation on it, one epoch each in turn, for ``--rounds``
rounds (interleaving keeps the ratios fair on a machine shared with other jobs);
the table shows the median epoch and the median CPU seconds. Peak memory needs a
clean process per implementation: a fresh worker builds the same data and model,
resets the kernel's high-water mark (``/proc/self/clear_refs``), trains
``--memory-steps`` steps and reads ``VmHWM``. "train MB" is that peak minus the
resident size just before training (data and model already built): what the
training step itself costs.

Models (synthetic click data, 26 categorical fields, 5% missing values, long-tailed
values hashed into buckets; labels from a hidden logistic model):

* ``emb-mlp``: issue 5's model, all fields hashed into one 2^18-bucket table of dim 8,
  MLP 208-512-256-128-1: 2.37M parameters, 100k rows.
* ``deepfm`` / ``dcnv2``: the models of ``models/``, 2^20 buckets split over the
  26 fields, 13 numeric features, 100k rows.
* ``emb-mlp-small``: a 2^12-bucket table where Opacus' hooks mode (dense per-example
  gradients) is affordable, as a reference point.

Every private run uses noise multiplier 1.0, clipping norm 1.0, expected batch 1024
declared (Poisson rate 1024/rows, one epoch = rows/1024 steps), noise and sampling
from the production CSPRNG (``fedctr.privacy.randomness.SecureRandom``: ChaCha20, float64
Box-Muller released in float32), the optimizer of ``--optimizer`` (Adam by default,
as the partner trainer). Both sides fetch a batch with one gather per column (the
non-private side as ``fedctr.models.logs.reader.EncodedData.loader`` does, the private side in
``fedctr.privacy.dpsgd.sampling.PoissonLoader``), so data loading costs the same.

User-level rows (``fedctr-sparse (user)``, issue 14): every row also names a user, with a
Zipf(2) number of rows per user (``fedctr.federation.demo.synthetic.zipf_users``, the demo
federation's law: ~60% of users have one row, the heaviest hundreds). Each user keeps at
most ``USER_MAX_ROWS`` = 8 rows (chosen once by the sampler), users are Poisson-sampled at
``q = 1024 / kept rows`` so a step holds 1024 rows in expectation, as the example-level
steps do, and the declared expected batch is those 1024 rows (the same divisor as the
example-level rows). One epoch is ``1/q`` steps: every kept row once in expectation, which
is fewer steps than the example-level epoch because the rows beyond 8 per user are never
used; "steps" shows both, and "ms/step" compares the per-step cost directly.

After the table, one line gives the noise of one step for the largest model alone:
torch's ``normal_`` (what fedctr used before; not cryptographically secure) against
``SecureRandom.gaussian_``, median of ``--noise-reps`` calls in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from fedctr.federation.demo.synthetic import zipf_users
from fedctr.models import build_model, model_config
from fedctr.models.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fedctr.privacy.budget import BucketSelection
from fedctr.privacy.dpsgd import UserSampling, get_implementation
from fedctr.privacy.randomness import SecureRandom

logger = logging.getLogger("bench_dpsgd")

NON_PRIVATE = "non-private"
USER_LEVEL = "fedctr-sparse (user)"  # fedctr-sparse with user_sampling
USER_MAX_ROWS = 8  # k: the declared bound on one user's rows
SELECTION = "fedctr-sparse (select)"  # fedctr-sparse with DP bucket selection (DP-AdaFEST)
# sigma_select = 3 sigma, threshold 2 sigma_select (the partner config's defaults)
SELECTION_RATIO, SELECTION_THRESHOLD = 3.0, 2.0
SEED = 0


@dataclass(frozen=True)
class Workload:
    """One model and its synthetic data."""

    name: str
    model: str  # "emb-mlp" or a name in models.registered_models()
    rows: int
    buckets: int  # total hashed buckets (split over the fields for models/ models)
    hidden: tuple[int, ...]
    implementations: tuple[str, ...]
    fields: int = 26
    numeric: int = 13
    embed_dim: int = 8
    batch_size: int = 1024


FAST = (NON_PRIVATE, "opacus-ghost", "fedctr-sparse", USER_LEVEL, SELECTION)
FULL_WORKLOADS = (
    Workload("emb-mlp 2^18", "emb-mlp", 100_000, 2**18, (512, 256, 128), FAST),
    Workload("deepfm 2^20", "deepfm", 100_000, 2**20, (64, 32), FAST),
    Workload("dcnv2 2^20", "dcnv2", 100_000, 2**20, (64, 32), FAST),
    Workload("emb-mlp 2^12", "emb-mlp", 20_000, 2**12, (64, 32), (*FAST, "opacus-hooks")),
)
QUICK_WORKLOADS = (
    Workload("emb-mlp 2^14", "emb-mlp", 8_000, 2**14, (64, 32), FAST),
    Workload("deepfm 2^16", "deepfm", 8_000, 2**16, (64, 32), FAST),
    Workload("emb-mlp 2^10", "emb-mlp", 4_000, 2**10, (32,), (*FAST, "opacus-hooks")),
)


# ---- data and models --------------------------------------------------------------------


class EmbeddingMLP(nn.Module):
    """Issue 5's model: every field hashed into one shared table, concatenated, MLP."""

    def __init__(self, buckets: int, fields: int, dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.embedding = nn.Embedding(buckets, dim)
        nn.init.normal_(self.embedding.weight, std=0.01)
        layers: list[nn.Module] = []
        width = fields * dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x_cat: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embedding(x_cat).flatten(1)).squeeze(1)


def synthetic(w: Workload) -> TensorDataset:
    """Long-tailed categorical values, 5% missing (bucket 0), clicks from a hidden model."""
    rng = np.random.default_rng(SEED)
    shared = w.model == "emb-mlp"
    per_field = w.buckets if shared else w.buckets // w.fields
    cardinality = np.geomspace(10, 200_000, w.fields).astype(np.int64)
    raw = np.floor(cardinality ** rng.random((w.rows, w.fields))).astype(np.int64)
    field = np.arange(w.fields, dtype=np.int64)
    hashed = (raw * 0x9E3779B1 + field * 0x85EBCA6B) % (per_field - 1) + 1
    hashed[rng.random((w.rows, w.fields)) < 0.05] = 0
    weights = rng.normal(0.0, 0.4, per_field)
    logit = -1.5 + weights[hashed].sum(1) / np.sqrt(w.fields)
    numeric = np.log1p(rng.lognormal(1.0, 1.5, (w.rows, w.numeric))).astype(np.float32)
    if not shared:
        logit += 0.3 * (numeric[:, 0] - numeric[:, 0].mean())
    y = (rng.random(w.rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    x_cat = torch.from_numpy(hashed)
    if shared:
        return TensorDataset(x_cat, torch.from_numpy(y))
    return TensorDataset(
        x_cat, torch.from_numpy(numeric), torch.zeros(w.rows, 0), torch.from_numpy(y)
    )


def synthetic_users(w: Workload) -> torch.Tensor:
    """Each row's user: Zipf(2) rows per user, as the demo federation's logs.

    Drawn from a generator of its own, so the click data are the very rows every other
    implementation trains on; users are independent of the features (their cost is the
    per-user layout, which depends on how a batch's rows group, not on their values).
    """
    return torch.from_numpy(zipf_users(w.rows, np.random.default_rng(SEED + 1)).astype(np.int64))


def kept_rows(users: torch.Tensor, max_rows: int) -> int:
    """Rows left once every user keeps at most ``max_rows`` (what the sampler trains on)."""
    _, counts = torch.unique(users, return_counts=True)
    return int(counts.clamp(max=max_rows).sum())


def build(w: Workload) -> nn.Module:
    torch.manual_seed(SEED)
    if w.model == "emb-mlp":
        return EmbeddingMLP(w.buckets, w.fields, w.embed_dim, w.hidden)
    spec = FeatureSpec(
        name="bench",
        salt="bench",
        label="y",
        categorical=tuple(
            CategoricalFeature(name=f"C{i}", buckets=w.buckets // w.fields) for i in range(w.fields)
        ),
        numeric=tuple(NumericFeature(name=f"I{i}") for i in range(w.numeric)),
    )
    return build_model(spec, model_config(w.model, embed_dim=w.embed_dim, hidden=w.hidden))


@dataclass
class Trainer:
    """One implementation's model, optimizer, loader and criterion, ready to step."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    criterion: object
    engine: object | None


def trainer(w: Workload, data: TensorDataset, implementation: str, optimizer: str) -> Trainer:
    model = build(w)
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=1e-3 if optimizer == "adam" else 0.1)
    if implementation == NON_PRIVATE:
        return Trainer(
            model, opt, shuffled_batches(data, w.batch_size), nn.BCEWithLogitsLoss(), None
        )
    engine = PrivacyEngine(accountant="rdp")
    rows, user_sampling, name = w.rows, None, implementation
    selection = None
    if implementation == SELECTION:
        name = "fedctr-sparse"
        selection = BucketSelection(
            noise_multiplier=SELECTION_RATIO, threshold=SELECTION_THRESHOLD * SELECTION_RATIO
        )
    if implementation == USER_LEVEL:
        users = synthetic_users(w)
        user_sampling = UserSampling(users=users, max_rows=USER_MAX_ROWS)
        # q over users such that a step holds w.batch_size of the kept rows in expectation
        rows, name = kept_rows(users, USER_MAX_ROWS), "fedctr-sparse"
    private = get_implementation(name).make_private(
        engine,
        module=model,
        optimizer=opt,
        data_loader=DataLoader(data),  # only its dataset is used: Poisson batches replace it
        sample_rate=w.batch_size / rows,  # declared, as a partner's config would
        steps=math.ceil(rows / w.batch_size),  # one epoch per pass over the loader
        expected_batch_size=w.batch_size,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        rng=SecureRandom.fresh(),  # the production noise and sampling source
        user_sampling=user_sampling,
        selection=selection,
    )
    return Trainer(
        private.module, private.optimizer, private.data_loader, private.criterion, engine
    )


def shuffled_batches(data: TensorDataset, batch_size: int) -> DataLoader:
    """Shuffled mini-batches, each fetched with one gather per column (``dataset[indices]``)."""
    sampler = BatchSampler(
        RandomSampler(data, generator=torch.Generator().manual_seed(SEED)),
        batch_size,
        drop_last=False,
    )
    return DataLoader(data, sampler=sampler, batch_size=None, collate_fn=_as_is)


def _as_is(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


def run_steps(t: Trainer, max_steps: int | None = None) -> tuple[int, float]:
    steps, total = 0, 0.0
    for *inputs, y in t.loader:
        t.optimizer.zero_grad()
        loss = t.criterion(t.module(*inputs), y)
        loss.backward()
        t.optimizer.step()
        total += float(loss.item()) if len(y) else 0.0
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    return steps, total / max(steps, 1)


# ---- workers (one fresh process each) ---------------------------------------------------


def worker_time(w: Workload, rounds: int, optimizer: str) -> dict:
    """Interleaved epochs of every implementation on the same data, in this process."""
    data = synthetic(w)
    trainers = {impl: trainer(w, data, impl, optimizer) for impl in w.implementations}
    for t in trainers.values():  # warm-up: allocate optimizer state and buffers
        run_steps(t, max_steps=3)
    out: dict[str, dict] = {impl: {"wall": [], "cpu": [], "loss": []} for impl in w.implementations}
    for r in range(rounds):
        for impl, t in trainers.items():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            steps, loss = run_steps(t)
            out[impl]["wall"].append(time.perf_counter() - wall0)
            out[impl]["cpu"].append(time.process_time() - cpu0)
            out[impl]["loss"].append(loss)
            out[impl]["steps"] = steps
            logger.info("%s round %d %s: %.2f s", w.name, r, impl, out[impl]["wall"][-1])
    out["_params"] = sum(p.numel() for p in build(w).parameters())
    return out


def worker_noise(numel: int, reps: int) -> dict:
    """Milliseconds to noise ``numel`` float32 values: torch ``normal_`` vs the CSPRNG."""
    out = torch.empty(numel)
    rng = SecureRandom.fresh()
    times: dict[str, list[float]] = {"normal_": [], "gaussian_": []}
    for _ in range(reps + 1):  # the first call of each allocates: dropped
        for name, fill in (
            ("normal_", lambda: out.normal_(0.0, 1.0)),
            ("gaussian_", lambda: rng.gaussian_(out, std=1.0)),
        ):
            start = time.perf_counter()
            fill()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(ms[1:]) for name, ms in times.items()}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def worker_memory(w: Workload, implementation: str, steps: int, optimizer: str) -> dict:
    """Peak resident memory of a few training steps, in a process of its own."""
    data = synthetic(w)
    t = trainer(w, data, implementation, optimizer)
    before_kb = _rss_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    run_steps(t, max_steps=steps)
    peak_kb = _rss_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"before_mb": before_kb / 1024, "peak_mb": peak_kb / 1024, "hwm_reset": reset}


# ---- the parent: spawn, collect, print ----------------------------------------------------


def spawn(args: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}x" if base > 0 else "  n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and tables")
    parser.add_argument("--rounds", type=int, default=None, help="timed epochs per implementation")
    parser.add_argument("--memory-steps", type=int, default=20)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--only", default="", help="comma-separated workload names to run")
    parser.add_argument("--noise-reps", type=int, default=20, help="noise-only calls timed")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    warnings.filterwarnings("ignore")

    if args.worker:
        kind, raw, *rest = args.worker
        fields = json.loads(raw)
        w = Workload(
            **{
                **fields,
                "hidden": tuple(fields["hidden"]),
                "implementations": tuple(fields["implementations"]),
            }
        )
        if kind == "time":
            result = worker_time(w, int(rest[0]), rest[1])
        elif kind == "noise":
            result = worker_noise(int(rest[0]), int(rest[1]))
        else:
            result = worker_memory(w, rest[0], int(rest[1]), rest[2])
        print(json.dumps(result))
        return

    workloads = QUICK_WORKLOADS if args.quick else FULL_WORKLOADS
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        workloads = tuple(w for w in workloads if w.name in wanted)
    rounds = args.rounds or (1 if args.quick else 2)
    mem_steps = min(args.memory_steps, 5) if args.quick else args.memory_steps
    header = (
        f"{'model':<14} {'implementation':<22} {'params':>9} {'steps':>5} {'epoch s':>8} "
        f"{'x np':>6} {'ms/step':>7} {'x np':>6} {'cpu s':>7} {'x np':>6} {'peak MB':>8} "
        f"{'x np':>6} {'train MB':>9} {'x np':>6}"
    )
    lines = [header, "-" * len(header)]
    largest = 0
    for w in workloads:
        spec = json.dumps(asdict(w))
        logger.info("timing %s (%d rounds)", w.name, rounds)
        timing = spawn(["time", spec, str(rounds), args.optimizer])
        memory = {}
        for impl in w.implementations:
            logger.info("memory %s %s", w.name, impl)
            memory[impl] = spawn(["memory", spec, impl, str(mem_steps), args.optimizer])
        largest = max(largest, timing["_params"])
        base_t = statistics.median(timing[NON_PRIVATE]["wall"])
        base_s = 1000 * base_t / timing[NON_PRIVATE]["steps"]
        base_c = statistics.median(timing[NON_PRIVATE]["cpu"])
        base_peak = memory[NON_PRIVATE]["peak_mb"]
        base_train = base_peak - memory[NON_PRIVATE]["before_mb"]
        for impl in w.implementations:
            wall = statistics.median(timing[impl]["wall"])
            steps = timing[impl]["steps"]
            per_step = 1000 * wall / steps
            cpu = statistics.median(timing[impl]["cpu"])
            peak = memory[impl]["peak_mb"]
            train = peak - memory[impl]["before_mb"]
            lines.append(
                f"{w.name:<14} {impl:<22} {timing['_params']:>9,} {steps:>5} {wall:8.2f} "
                f"{ratio(wall, base_t):>6} {per_step:7.1f} {ratio(per_step, base_s):>6} "
                f"{cpu:7.2f} {ratio(cpu, base_c):>6} {peak:8.0f} "
                f"{ratio(peak, base_peak):>6} {train:9.0f} {ratio(train, base_train):>6}"
            )
        lines.append("")
    print(
        f"DP-SGD epoch cost, batch 1024, sigma=1.0, C=1.0, optimizer={args.optimizer}, "
        f"median of {rounds} interleaved epoch(s); memory after {mem_steps} steps; "
        f"torch threads={torch.get_num_threads()}; {USER_LEVEL}: Zipf(2) rows per user, "
        f"at most {USER_MAX_ROWS} kept, users sampled for 1024 expected rows per step; "
        f"{SELECTION}: sigma_select {SELECTION_RATIO:g}, threshold "
        f"{SELECTION_THRESHOLD * SELECTION_RATIO:g} (noise only on the selected rows)"
    )
    print("\n".join(lines).rstrip())
    if largest:
        logger.info("noise alone, %d values", largest)
        args_noise = ["noise", json.dumps(asdict(workloads[0])), str(largest), str(args.noise_reps)]
        noise = spawn(args_noise)
        print(
            f"\nnoise of one step, {largest:,} float32 values, median of {args.noise_reps}: "
            f"torch normal_ {noise['normal_']:.1f} ms (not secure), "
            f"SecureRandom.gaussian_ {noise['gaussian_']:.1f} ms "
            f"({noise['gaussian_'] / noise['normal_']:.2f}x)"
        )


if __name__ == "__main__":
    main()
