"""``fedctr serve``: run the scoring API under uvicorn.

Settings travel to the workers as ``FEDCTR_SERVE_*`` environment variables (each
worker is a fresh process that builds the app with ``create_app``). With several
workers, Prometheus runs in multiprocess mode over a temporary directory.
"""

from __future__ import annotations

import argparse
import copy
import logging
import logging.config
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from fedctr.errors import FedctrError
from fedctr.server.scoring.api.core.config import ENV_PREFIX, Settings


def build_serve_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``serve`` arguments to ``parser`` (a fresh one if None)."""
    parser = parser or argparse.ArgumentParser(
        prog="fedctr serve", description="Serve the signed global model over HTTP."
    )
    parser.add_argument("--registry", type=Path, required=True, help="model registry directory")
    parser.add_argument("--public-key", type=Path, required=True, help="platform public key PEM")
    parser.add_argument(
        "--spec", default=None, help="feature spec file or built-in name (default: the model's)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--inference", choices=("numpy", "torch"), default="numpy")
    parser.add_argument(
        "--no-fast-path",
        action="store_true",
        help="serve the scoring routes through FastAPI's router only (slower; for comparison)",
    )
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between checks")
    parser.add_argument("--max-batch-rows", type=int, default=10_000)
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    ab = parser.add_argument_group("A/B and canary (README 'A/B and canary serving')")
    ab.add_argument(
        "--canary", default=None, help="registry version to serve as the canary arm (vNNNN-...)"
    )
    ab.add_argument(
        "--canary-share", type=float, default=0.01, help="initial canary share (ramp at runtime)"
    )
    ab.add_argument("--split-key", choices=("impression_id", "user_id"), default="impression_id")
    ab.add_argument(
        "--impression-capacity",
        type=int,
        default=1 << 20,
        help="impressions kept for feedback (14 bytes each; older ones are evicted)",
    )
    ab.add_argument("--alert-webhook", default=None, help="URL alerts are POSTed to as JSON")
    ab.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the bearer token for ramp, rollback and feedback (default: "
        "loopback clients only)",
    )
    return parser


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "REGISTRY": str(args.registry.resolve()),
        "PUBLIC_KEY": str(args.public_key.resolve()),
        "INFERENCE": args.inference,
        "POLL_INTERVAL_S": str(args.poll_interval),
        "MAX_BATCH_ROWS": str(args.max_batch_rows),
        "FAST_PATH": "false" if args.no_fast_path else "true",
    }
    if args.spec is not None:
        spec = Path(args.spec)
        env["SPEC"] = str(spec.resolve()) if spec.exists() else args.spec
    if args.canary is not None:
        env["CANARY"] = args.canary
    env["CANARY_SHARE"] = str(args.canary_share)
    env["SPLIT_KEY"] = args.split_key
    env["IMPRESSION_CAPACITY"] = str(args.impression_capacity)
    if args.alert_webhook is not None:
        env["ALERT_WEBHOOK"] = args.alert_webhook
    if args.admin_token_file is not None:
        env["ADMIN_TOKEN"] = args.admin_token_file.read_text().strip()
    return {ENV_PREFIX + k: v for k, v in env.items()}


def log_config(level: str) -> dict:
    """uvicorn's logging config plus the ``fedctr`` logger on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["fedctr"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces ``args`` (for the re-exec below)."""
    argv = [
        "--registry", str(args.registry), "--public-key", str(args.public_key),
        "--host", args.host, "--port", str(args.port), "--workers", str(args.workers),
        "--inference", args.inference, "--poll-interval", str(args.poll_interval),
        "--max-batch-rows", str(args.max_batch_rows), "--log-level", args.log_level,
    ]  # fmt: skip
    if args.spec is not None:
        argv += ["--spec", args.spec]
    if args.no_fast_path:
        argv.append("--no-fast-path")
    if args.canary is not None:
        argv += ["--canary", args.canary]
    argv += ["--canary-share", str(args.canary_share), "--split-key", args.split_key]
    argv += ["--impression-capacity", str(args.impression_capacity)]
    if args.alert_webhook is not None:
        argv += ["--alert-webhook", args.alert_webhook]
    if args.admin_token_file is not None:
        argv += ["--admin-token-file", str(args.admin_token_file)]
    return argv


def _one_blas_thread(args: argparse.Namespace) -> None:
    """One BLAS thread per process: OpenBLAS threads spin-wait, and on a busy 2-core
    machine a 1000-row matmul took 7 ms with them instead of 0.1 ms. The count is fixed
    when numpy loads, so if the caller (e.g. the ``fedctr`` CLI) already imported numpy
    without the setting, re-execute cleanly as ``python -m fedctr.server.scoring.api.serve``."""
    unset = [v for v in BLAS_THREAD_VARS if v not in os.environ]
    for var in unset:
        os.environ[var] = "1"
    if unset and "numpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(
            sys.executable, [sys.executable, "-m", "fedctr.server.scoring.api.serve", *_argv(args)]
        )


def serve(args: argparse.Namespace) -> int:
    """Validate the configuration, then run uvicorn until interrupted."""
    _one_blas_thread(args)
    if args.workers < 1:
        sys.stderr.write("fedctr serve: --workers must be >= 1\n")
        return 2
    try:
        os.environ.update(_environment(args))
    except OSError as exc:
        sys.stderr.write(f"fedctr serve: cannot read the admin token: {exc}\n")
        return 1
    # Every worker splits with the same key and shares one rollout board (a file the
    # parent creates before any worker starts, removed when the service stops).
    os.environ.setdefault(ENV_PREFIX + "SPLIT_SALT", secrets.token_hex(16))
    state_dir = tempfile.mkdtemp(prefix="fedctr-rollout-")
    try:
        return _serve(args, Path(state_dir))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def _serve(args: argparse.Namespace, state_dir: Path) -> int:
    import uvicorn

    from fedctr.server.scoring.api.main import create_app
    from fedctr.server.scoring.api.workers import run_workers
    from fedctr.server.scoring.rollout import Board

    logging.config.dictConfig(log_config(args.log_level))
    try:
        settings = Settings()  # type: ignore[call-arg]  (from the environment)
        state = state_dir / "rollout.bin"
        Board.create(
            state,
            share=settings.canary_share if settings.canary else 0.0,
            capacity=settings.impression_capacity,
        ).close()
        os.environ[ENV_PREFIX + "ROLLOUT_STATE"] = str(state)
        app = create_app(Settings())  # type: ignore[call-arg]
    except (ValidationError, FedctrError) as exc:
        sys.stderr.write(f"fedctr serve: {exc}\n")
        return 1
    common = dict(
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,  # the access log is not needed and costs ~10% throughput
        log_config=log_config(args.log_level),
        log_level=args.log_level,
    )
    if args.workers == 1:
        import torch

        torch.set_num_threads(1)
        uvicorn.run(app, **common)
        return 0
    del app
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    own_dir = metrics_dir is None
    if own_dir:
        metrics_dir = tempfile.mkdtemp(prefix="fedctr-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        run_workers(
            "fedctr.server.scoring.api.main:create_app",
            factory=True,
            workers=args.workers,
            # A worker imports torch and verifies + warms up the model before it answers
            # uvicorn's pings; on a busy 2-core box that can exceed the default 5 s, and the
            # supervisor would then kill and restart it forever.
            timeout_worker_healthcheck=120,
            **common,
        )
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``fedctr serve``: parses ``argv`` (sys.argv[1:] if None)."""
    return serve(build_serve_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(serve_main())
