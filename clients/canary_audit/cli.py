"""``fedctr audit --empirical``-style command: the canary audit of one partner's training.

Runs :func:`fedctr.clients.canary_audit.run.run_empirical_audit` on a ``partner.toml`` (its data,
spec, budget, planned rounds and DP-SGD implementation) and writes the result as JSON.
It never touches the partner's own state, key or ledger: the audit trains in a
throw-away directory.

Exit codes, as ``fedctr audit``: 0 the claim stands (lower bound <= claimed epsilon),
1 the canaries refute the claimed epsilon, 2 unusable input (bad option, unreadable
config or data, a partner without DP, too many canaries for the spec's buckets).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path

from fedctr.clients.canary_audit.run import (
    AUDIT_CONFIDENCE,
    EmpiricalAuditResult,
    run_empirical_audit,
)
from fedctr.clients.config import load_partner_config
from fedctr.errors import FedctrError
from fedctr.models import DEFAULT_MODEL, ModelConfig, model_config

logger = logging.getLogger(__name__)

EXIT_PASS, EXIT_REFUTED, EXIT_USAGE = 0, 1, 2
DEFAULT_CANARIES = 1000


def build_empirical_parser(
    parser: argparse.ArgumentParser | None = None,
) -> argparse.ArgumentParser:
    """Add the empirical audit's options to ``parser`` (``fedctr audit-empirical``)."""
    parser = parser or argparse.ArgumentParser(
        prog="fedctr audit-empirical",
        description="Train once with canaries through a partner's DP-SGD path and test its "
        "claimed epsilon (one-run audit, Steinke, Nasr & Jagielski 2023).",
    )
    parser.add_argument("--partner", type=Path, required=True, help="the partner.toml to audit")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model the federation trains (lr, fm, deepfm, dcnv2, fusion; default %(default)s)",
    )
    parser.add_argument(
        "--model-config",
        type=Path,
        default=None,
        help="JSON model config (as in a model card's model_config); overrides --model",
    )
    parser.add_argument(
        "--canaries",
        type=int,
        default=DEFAULT_CANARIES,
        help="canaries m, each trained on with probability 1/2 (default %(default)s)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds to train (default: planned_rounds)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the canaries and their membership (default: random, recorded)",
    )
    parser.add_argument(
        "--implementation",
        default=None,
        help="DP-SGD implementation to audit instead of the config's dp_implementation",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=AUDIT_CONFIDENCE,
        help="confidence of the lower bound (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    return parser


def _model_config(args: argparse.Namespace) -> ModelConfig:
    if args.model_config is None:
        return model_config(args.model)
    try:
        raw = json.loads(Path(args.model_config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read model config {args.model_config}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{args.model_config}: a model config is a JSON object")
    return ModelConfig.from_dict(raw)


def run_empirical_command(args: argparse.Namespace) -> int:
    """Run the audit from parsed options; print the verdict, write ``--out``."""
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    try:
        config = load_partner_config(args.partner)
        model_config = _model_config(args)
        result = run_empirical_audit(
            config,
            model_config,
            canaries=args.canaries,
            seed=seed,
            rounds=args.rounds,
            implementation=args.implementation,
            confidence=args.confidence,
        )
    except (FedctrError, ValueError) as exc:
        logger.error("empirical audit not run: %s", exc)
        print(f"fedctr audit --empirical: {exc}")
        return EXIT_USAGE
    if args.out is not None:
        write_result(result, args.out)
    print(result.summary())
    if args.out is not None:
        print(f"json: {args.out}")
    return EXIT_PASS if result.passed else EXIT_REFUTED


def write_result(result: EmpiricalAuditResult, path: Path) -> Path:
    """The result's JSON view, indented, to ``path`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run; returns the exit code."""
    parser = build_empirical_parser()
    args = parser.parse_args(argv)
    if args.canaries < 2:
        parser.error("--canaries must be at least 2")
    if args.rounds is not None and args.rounds <= 0:
        parser.error("--rounds must be positive")
    return run_empirical_command(args)


__all__ = [
    "DEFAULT_CANARIES",
    "EXIT_PASS",
    "EXIT_REFUTED",
    "EXIT_USAGE",
    "build_empirical_parser",
    "main",
    "run_empirical_command",
    "write_result",
]
