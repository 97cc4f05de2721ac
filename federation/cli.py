"""The ``fedctr`` command: one entry point for partners, the platform and auditors.

Subcommands are registered in a table (name -> parser builder, handler); each
handler returns the process exit code. Domain errors print one actionable line,
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedctr.errors import FedctrError

logger = logging.getLogger("fedctr")

Handler = Callable[[argparse.Namespace], int]
Builder = Callable[[argparse.ArgumentParser], None]


def _configure_logging(verbose: bool, log_file: Path | None = None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if log_file is not None:
        flwr_logger = logging.getLogger("flwr")
        for h in list(flwr_logger.handlers):
            flwr_logger.removeHandler(h)
        flwr_logger.propagate = True
    for noisy in ("opacus", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---- demo ---------------------------------------------------------------
def _demo_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.privacy.dpsgd import DEFAULT_IMPLEMENTATION, available_implementations

    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("fedctr-demo"),
        help="where the federation, registry, ledgers and audit go (recreated)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="real partner files instead of the generated federation",
    )
    p.add_argument("--spec", type=Path, default=None, help="feature spec for --data")
    p.add_argument("--partners", type=int, default=3, help="partners to split --data into")
    p.add_argument("--split-column", default=None, help="categorical column to split --data by")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--model", default="deepfm", help="lr, fm, deepfm, dcnv2 or fusion")
    p.add_argument("--strategy", default="fedavg")
    p.add_argument("--min-partners", type=int, default=2)
    p.add_argument("--epsilon", type=float, default=8.0, help="each partner's budget")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--max-grad-norm", type=float, default=5.0)
    p.add_argument(
        "--sample-rate",
        type=float,
        default=0.25,
        help="each partner's declared Poisson sampling rate q",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=300,
        help="declared expected batch size (normalizes the noised gradient sum)",
    )
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument(
        "--dp-implementation", default=DEFAULT_IMPLEMENTATION, choices=available_implementations()
    )
    p.add_argument(
        "--unit",
        default="example",
        choices=("example", "user"),
        help="unit of privacy: one row, or all rows of one user (the spec's user_key)",
    )
    p.add_argument(
        "--max-rows-per-user",
        type=int,
        default=8,
        help="with --unit user: rows of one user used per round, at most",
    )
    p.add_argument(
        "--compare-centralized",
        action="store_true",
        help="also train the same model centrally without DP and compare AUC",
    )
    p.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="SecAgg+ between partners and platform: the platform sees only sums of updates",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="run the virtual partners on this Ray cluster ('auto' or host:port); the "
        "workdir must be on a filesystem every machine mounts (README 'Many partners')",
    )
    p.add_argument("--no-serve", action="store_true", help="skip the scoring step")
    p.add_argument("--no-audit", action="store_true", help="skip the audit step")
    p.add_argument(
        "--release-gate-canaries",
        type=int,
        default=1000,
        help="canaries of the release gate's empirical audit before publishing (0: no gate)",
    )


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from fedctr.federation.demo.run import DemoOptions, run_demo

    workdir = args.workdir.resolve()
    _configure_logging(args.verbose, workdir.parent / f"{workdir.name}.log")
    opts = DemoOptions(
        workdir=workdir,
        data=args.data,
        spec=args.spec,
        partners=args.partners,
        split_column=args.split_column,
        rounds=args.rounds,
        model=args.model,
        strategy=args.strategy,
        min_partners=args.min_partners,
        epsilon=args.epsilon,
        delta=args.delta,
        max_grad_norm=args.max_grad_norm,
        sample_rate=args.sample_rate,
        batch_size=args.batch_size,
        local_epochs=args.local_epochs,
        learning_rate=args.learning_rate,
        dp_implementation=args.dp_implementation,
        unit=args.unit,
        max_rows_per_user=args.max_rows_per_user,
        compare_centralized=args.compare_centralized,
        serve=not args.no_serve,
        audit=not args.no_audit,
        release_gate_canaries=args.release_gate_canaries,
        secure_aggregation=args.secure_aggregation,
        ray_address=args.ray_address,
    )
    console = Console(width=max(Console().width, 120))
    console.print(f"(detailed log: {workdir.parent / f'{workdir.name}.log'})")
    return run_demo(opts, console)


# ---- verify-model / serve / audit ----------------------------------------
def _verify_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.server.registry import build_verify_parser

    build_verify_parser(p)


def _verify(args: argparse.Namespace) -> int:
    from fedctr.server.registry import verify_model

    return verify_model(args)


def _serve_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.server.scoring.api.serve import build_serve_parser

    build_serve_parser(p)


def _serve(args: argparse.Namespace) -> int:
    from fedctr.server.scoring.api.serve import serve

    return serve(args)


def _console_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.server.console.cli import build_console_parser

    build_console_parser(p)


def _console(args: argparse.Namespace) -> int:
    from fedctr.server.console.cli import run_console

    return run_console(args)


def _audit_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.privacy.audit.cli import build_audit_parser

    build_audit_parser(p)


def _empirical_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.clients.canary_audit.cli import build_empirical_parser

    build_empirical_parser(p)


def _empirical(args: argparse.Namespace) -> int:
    from fedctr.clients.canary_audit.cli import run_empirical_command

    return run_empirical_command(args)


def _audit(args: argparse.Namespace) -> int:
    from fedctr.privacy.audit.cli import run_audit_command

    return run_audit_command(args)


def _federation_audit_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("fedctr-federation-audit"),
        help="where the generated federation and the run go (must be new or empty)",
    )
    p.add_argument("--canaries", type=int, default=50, help="canary clients k (default 50)")
    p.add_argument("--unseen", type=int, default=50, help="directions never inserted (null)")
    p.add_argument("--participation", type=float, default=1.0, help="chance a canary joins a round")
    p.add_argument("--seed", type=int, default=0, help="seed of the canary directions")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default="lr", help="lr, fm, deepfm, dcnv2 or fusion")
    p.add_argument("--strategy", default="fedavg", help="a FedAvg-family strategy")
    p.add_argument("--epsilon", type=float, default=8.0, help="each partner's record-level budget")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")


def _federation_audit(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from fedctr.federation.demo.federation_audit import (
        FederationAuditOptions,
        result_table,
        run_federation_audit,
    )
    from fedctr.server.platform.strategies.canary_clients import CanaryConfig

    opts = FederationAuditOptions(
        workdir=args.workdir.resolve(),
        canaries=CanaryConfig(
            canaries=args.canaries,
            unseen=args.unseen,
            participation=args.participation,
            seed=args.seed,
        ),
        rounds=args.rounds,
        model=args.model,
        strategy=args.strategy,
        epsilon=args.epsilon,
        delta=args.delta,
    )
    result = run_federation_audit(opts)
    Console(width=120).print(result_table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    return 0


# ---- sample-data ---------------------------------------------------------
def _sample_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="where the files go")
    p.add_argument("--seed", type=int, default=7)


def _sample(args: argparse.Namespace) -> int:
    from fedctr.federation.demo.synthetic import generate_federation
    from fedctr.models import builtin_spec_path

    logs, test = generate_federation(args.dir, seed=args.seed)
    log = logging.getLogger("fedctr.cli")
    for partner, path in logs.items():
        log.info("partner %-14s %s", partner, path)
    log.info("platform test file %s", test)
    log.info("feature spec       %s (built-in name: demo)", builtin_spec_path("demo"))
    return 0


_OWN_COMMANDS: dict[str, tuple[str, Builder, Handler]] = {
    "demo": ("run the whole story end to end on one machine", _demo_parser, _demo),
    "verify-model": (
        "verify a published model against the platform public key",
        _verify_parser,
        _verify,
    ),
    "serve": ("serve the signed global model over HTTP (FastAPI/uvicorn)", _serve_parser, _serve),
    "console": (
        "read-only operator console: runs, privacy spend, model versions, serving arms",
        _console_parser,
        _console,
    ),
    "audit": (
        "verify ledgers, model cards and every epsilon; write a report",
        _audit_parser,
        _audit,
    ),
    "audit-empirical": (
        "one-run canary audit of a partner's real DP-SGD path: an epsilon lower bound "
        "(95%) next to the claimed epsilon; exit 1 if the claim is refuted",
        _empirical_parser,
        _empirical,
    ),
    "audit-federation": (
        "federation-level epsilon estimate from k canary clients in a simulation run "
        "(one-shot, Andrew et al. 2024); an audit run publishes nothing",
        _federation_audit_parser,
        _federation_audit,
    ),
    "sample-data": (
        "write the demo's generated partner logs and platform test file (to try a deployment)",
        _sample_parser,
        _sample,
    ),
}


def commands() -> dict[str, tuple[str, Builder, Handler]]:
    """name -> (help, parser builder, handler): this module's and the launchers'.

    The deployment launcher is optional at import time (a scoring-only install may
    lack its dependencies); its commands are then simply absent.
    """
    table = dict(_OWN_COMMANDS)
    try:
        from fedctr.federation.deployment.commands import COMMANDS as DEPLOYMENT
    except ModuleNotFoundError as exc:
        if not str(exc.name).startswith("fedctr.federation.deployment"):
            raise
        return table
    for name, help_text, builder, handler in DEPLOYMENT:
        if name in table:
            raise ValueError(f"command '{name}' is defined twice")
        table[name] = (help_text, builder, handler)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedctr",
        description="Privacy-preserving federated CTR learning: partners train with DP-SGD, "
        "the platform aggregates and publishes signed models, auditors verify every epsilon.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, builder, _) in commands().items():
        builder(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        _configure_logging(args.verbose)
    _, _, handler = commands()[args.command]
    try:
        return handler(args)
    except FedctrError as exc:
        logger.debug("command failed", exc_info=True)
        print(f"fedctr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "commands", "main"]
