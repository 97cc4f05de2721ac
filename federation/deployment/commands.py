"""``fedctr platform ...`` and ``fedctr partner ...``: registered into the fedctr CLI.

::

    fedctr platform init DIR --hosts HOST[,HOST...] [--port 9093] [--spec demo] ...
    fedctr platform add-partner DIR REGISTRATION.toml [--replace]
    fedctr platform start DIR [--background]
    fedctr platform run DIR [--run-id ID] [--timeout S]
    fedctr platform stop DIR
    fedctr partner init DIR --id ID --data FILE --spec FILE --superlink HOST:PORT --ca FILE
    fedctr partner start DIR

``DIR`` is the folder ``init`` created (or its platform.toml / partner.toml).
Handlers return the exit code; domain errors become one line in ``fedctr``'s main.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger("fedctr")


def _quiet_libraries() -> None:
    """Our launchers' own log is for operators; libraries' INFO chatter is not."""
    for name in ("httpx", "alembic", "flwr", "opacus"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _config_file(path: Path, name: str) -> Path:
    return path / name if path.is_dir() or not path.suffix else path


# ---- platform -----------------------------------------------------------------
def _platform_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.clients.config import PrivacySettings

    planned_rounds = PrivacySettings().planned_rounds
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = sub.add_parser("init", help="create CA, SuperLink certificate, keys, platform.toml")
    init.add_argument("dir", type=Path)
    init.add_argument(
        "--hosts",
        required=True,
        help="comma-separated names/IPs partners use to reach the SuperLink (first = address)",
    )
    init.add_argument("--port", type=int, default=9093, help="SuperLink port (one for all APIs)")
    init.add_argument("--listen", default="0.0.0.0", help="interface the SuperLink binds")
    init.add_argument("--spec", default="demo", help="feature spec file or built-in name")
    init.add_argument(
        "--rounds",
        type=int,
        default=planned_rounds,
        help=f"rounds to run (partners plan for {planned_rounds} by default)",
    )
    init.add_argument("--min-partners", type=int, default=2)
    init.add_argument("--strategy", default="fedavg")
    init.add_argument("--model", default="lr", help="lr, fm, deepfm, dcnv2 or fusion")
    init.add_argument("--embed-dim", type=int, default=8, help="embedding width")
    init.add_argument("--timeout", type=float, default=600.0, help="per-round reply timeout (s)")
    init.add_argument("--eval-data", type=Path, default=None, help="platform-held test file")
    init.add_argument("--run-name", default="fedctr")
    init.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="SecAgg+: the platform sees only sums of partners' updates ([secure_aggregation])",
    )

    add = sub.add_parser("add-partner", help="register a partner's node and ledger keys")
    add.add_argument("dir", type=Path)
    add.add_argument("registration", type=Path, help="the partner's registration.toml")
    add.add_argument("--replace", action="store_true", help="rotate an existing partner's keys")

    start = sub.add_parser("start", help="run the SuperLink (TLS, node auth) until stopped")
    start.add_argument("dir", type=Path)
    start.add_argument("--ready-timeout", type=float, default=120.0)
    start.add_argument(
        "--background",
        action="store_true",
        help="detach once ready (logs in DIR/logs/platform.out); stop with `platform stop`",
    )
    start.add_argument("--stock", action="store_true", help=argparse.SUPPRESS)

    stop = sub.add_parser("stop", help="stop a SuperLink started with --background")
    stop.add_argument("dir", type=Path)

    run = sub.add_parser("run", help="submit the federation run and wait for the model")
    run.add_argument("dir", type=Path)
    run.add_argument("--run-id", default=None)
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue --run-id from its last committed round (after a platform crash)",
    )
    run.add_argument("--timeout", type=float, default=None, help="give up after S seconds")


def _platform(args: argparse.Namespace) -> int:
    from fedctr.federation.deployment.processes import StopFlag

    _quiet_libraries()
    config = _config_file(args.dir, "platform.toml")
    if args.action == "init":
        from fedctr.federation.deployment.bootstrap import (
            PlatformOptions,
            init_platform,
            resolve_spec,
        )
        from fedctr.federation.deployment.settings import load_superlink_settings
        from fedctr.models import ModelConfig
        from fedctr.privacy.secagg import SecAggSettings

        hosts = [h for h in args.hosts.split(",") if h.strip()]
        if "127.0.0.1" not in hosts:  # the platform's own tools dial the SuperLink locally
            hosts.append("127.0.0.1")
        path = init_platform(
            args.dir,
            PlatformOptions(
                hosts=tuple(hosts),
                spec=resolve_spec(args.spec),
                port=args.port,
                listen=args.listen,
                rounds=args.rounds,
                min_partners=args.min_partners,
                strategy=args.strategy,
                # the v1 form: --embed-dim where the model takes it
                model=ModelConfig.from_dict({"name": args.model, "embed_dim": args.embed_dim}),
                timeout_s=args.timeout,
                eval_data=args.eval_data,
                run_name=args.run_name,
                secure_aggregation=SecAggSettings() if args.secure_aggregation else None,
            ),
        )
        root = path.parent
        print(f"platform folder ready: {path}")
        print(f"  give partners: {root / 'tls' / 'ca.crt'} and {root / 'spec.toml'}")
        print(f"  partners dial (--superlink): {load_superlink_settings(path).address}")
        print(f"  register each partner: fedctr platform add-partner {root} REGISTRATION.toml")
        print(f"  then: fedctr platform start {root}")
        return 0
    if args.action == "add-partner":
        from fedctr.federation.deployment.bootstrap import add_partner, read_registration
        from fedctr.federation.deployment.platform import register_now

        registration = read_registration(args.registration)
        changed = add_partner(config, registration, replace=args.replace)
        live = register_now(config, registration.partner_id) if changed else False
        print(
            f"partner {registration.partner_id} registered (node key "
            f"{registration.fingerprint}){'' if changed else ', unchanged'}"
            + ("; the running SuperLink accepts it now" if live else "")
        )
        return 0
    if args.action == "start" and args.background:
        from fedctr.federation.deployment.platform import start_in_background

        pid = start_in_background(config, ready_timeout_s=args.ready_timeout)
        print(f"SuperLink running (launcher pid {pid}); stop: fedctr platform stop {args.dir}")
        return 0
    if args.action == "stop":
        from fedctr.federation.deployment.platform import stop_background

        stopped = stop_background(config)
        print("stopped" if stopped else "no SuperLink of this folder is running")
        return 0
    if args.action == "start":
        from fedctr.federation.deployment.platform import start_platform

        return start_platform(
            config,
            stop=StopFlag().install(),
            ready_timeout_s=args.ready_timeout,
            stock=args.stock,
        )
    from fedctr.federation.deployment.runs import describe, run_platform

    report = run_platform(
        config,
        stop=StopFlag().install(),
        run_id=args.run_id,
        timeout_s=args.timeout,
        resume=args.resume,
    )
    print(describe(report))
    return 0


# ---- partner ------------------------------------------------------------------
def _partner_parser(p: argparse.ArgumentParser) -> None:
    from fedctr.clients.config import PrivacySettings, TrainingSettings
    from fedctr.privacy.dpsgd import DEFAULT_IMPLEMENTATION, available_implementations
    from fedctr.privacy.unit import PRIVACY_UNITS

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = sub.add_parser("init", help="create node key, ledger key, partner.toml")
    init.add_argument("dir", type=Path)
    init.add_argument("--id", required=True, dest="partner_id")
    init.add_argument("--data", required=True, type=Path, help="the partner's log file")
    init.add_argument("--spec", required=True, type=Path, help="the platform's spec.toml")
    init.add_argument("--superlink", required=True, help="HOST:PORT of the platform")
    init.add_argument("--ca", required=True, type=Path, help="the platform's tls/ca.crt")
    # Defaults are the partner config's own (chosen from the utility benchmark's table).
    privacy, training = PrivacySettings(), TrainingSettings()
    init.add_argument("--epsilon", type=float, default=privacy.epsilon)
    init.add_argument("--delta", type=float, default=privacy.delta)
    init.add_argument(
        "--planned-rounds",
        type=int,
        default=privacy.planned_rounds,
        help="rounds the budget is spread over (match the platform's --rounds)",
    )
    init.add_argument(
        "--sample-rate",
        type=float,
        default=privacy.sample_rate,
        help="Poisson sampling rate q of DP-SGD (declared: epsilon depends on it, not on n)",
    )
    init.add_argument("--max-grad-norm", type=float, default=privacy.max_grad_norm)
    init.add_argument("--accountant", default=privacy.accountant, choices=("rdp", "prv"))
    init.add_argument(
        "--unit",
        default=privacy.unit,
        choices=PRIVACY_UNITS,
        help="unit of privacy: one row, or all rows of one user (the spec's user_key)",
    )
    init.add_argument("--max-rows-per-user", type=int, default=privacy.max_rows_per_user)
    init.add_argument(
        "--bucket-selection",
        action="store_true",
        help="DP selection of the embedding rows a step updates (DP-AdaFEST)",
    )
    init.add_argument(
        "--dp-implementation", default=DEFAULT_IMPLEMENTATION, choices=available_implementations()
    )
    init.add_argument("--batch-size", type=int, default=training.batch_size)
    init.add_argument("--local-epochs", type=int, default=training.local_epochs)
    init.add_argument("--learning-rate", type=float, default=training.learning_rate)
    init.add_argument("--bad-rows", default="skip", choices=("skip", "reject"))

    start = sub.add_parser("start", help="run this partner's SuperNode until stopped")
    start.add_argument("dir", type=Path)
    start.add_argument(
        "--skip-data-check", action="store_true", help="do not read the data file at start"
    )
    start.add_argument(
        "--register-wait",
        type=float,
        default=120.0,
        help="if the platform refuses this node's key, keep trying this many seconds",
    )
    start.add_argument("--stock", action="store_true", help=argparse.SUPPRESS)


def _partner(args: argparse.Namespace) -> int:
    config = _config_file(args.dir, "partner.toml")
    if args.action == "init":
        from fedctr.clients.config import PrivacySettings, TrainingSettings
        from fedctr.federation.deployment.bootstrap import PartnerOptions, init_partner

        path = init_partner(
            args.dir,
            PartnerOptions(
                partner_id=args.partner_id,
                data=args.data,
                spec=args.spec,
                superlink=args.superlink,
                ca_cert=args.ca,
                privacy=PrivacySettings(
                    epsilon=args.epsilon,
                    delta=args.delta,
                    planned_rounds=args.planned_rounds,
                    sample_rate=args.sample_rate,
                    max_grad_norm=args.max_grad_norm,
                    accountant=args.accountant,
                    dp_implementation=args.dp_implementation,
                    unit=args.unit,
                    max_rows_per_user=args.max_rows_per_user,
                    bucket_selection=args.bucket_selection,
                ),
                training=TrainingSettings(
                    batch_size=args.batch_size,
                    local_epochs=args.local_epochs,
                    learning_rate=args.learning_rate,
                ),
                bad_rows=args.bad_rows,
            ),
        )
        root = path.parent
        print(f"partner folder ready: {path}")
        print(f"  send to the platform operator: {root / 'registration.toml'} (public keys only)")
        print(f"  then: fedctr partner start {root}")
        return 0
    from fedctr.federation.deployment.partner import start_partner
    from fedctr.federation.deployment.processes import StopFlag

    _quiet_libraries()
    return start_partner(
        config,
        stop=StopFlag().install(),
        stock=args.stock,
        check=not args.skip_data_check,
        register_wait_s=args.register_wait,
    )


# (name, help, parser builder, handler): the ``fedctr`` CLI adds these to its own.
COMMANDS = (
    (
        "platform",
        "run the platform: init, add-partner, start, run, stop",
        _platform_parser,
        _platform,
    ),
    ("partner", "run a partner node: init, start", _partner_parser, _partner),
)

__all__ = ["COMMANDS"]
