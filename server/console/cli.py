"""``fedctr console``: serve the operator console with uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_console_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--platform", type=Path, default=None, help="platform folder (reads runs/ and registry/)"
    )
    parser.add_argument(
        "--runs", type=Path, default=None, help="runs folder (default: PLATFORM/runs)"
    )
    parser.add_argument(
        "--registry", type=Path, default=None, help="model registry (default: PLATFORM/registry)"
    )
    parser.add_argument(
        "--public-key",
        type=Path,
        default=None,
        help="platform public key PEM (default: PLATFORM/keys/platform.pub)",
    )
    parser.add_argument(
        "--scoring-url", default=None, help="the scoring API, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument(
        "--expected-partners",
        type=int,
        default=None,
        help="partners a round should aggregate (default: all that contributed to the run)",
    )
    parser.add_argument(
        "--alert-webhook", default=None, help="URL partner-shortfall alerts are POSTed to"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--token-file", type=Path, default=None, help="required to listen beyond loopback"
    )
    return parser


def run_console(args: argparse.Namespace) -> int:
    import uvicorn

    from fedctr.server.console.app import ConsoleConfig, create_console

    platform = args.platform
    registry = args.registry or (platform / "registry" if platform else None)
    public_key = args.public_key
    if public_key is None and platform is not None:  # where platform init and the demo put it
        default = platform / "keys" / "platform.pub"
        public_key = default if default.is_file() else None
    config = ConsoleConfig(
        runs_dir=args.runs or (platform / "runs" if platform else None),
        registry=registry if registry is not None and registry.is_dir() else None,
        public_key=public_key,
        scoring_url=args.scoring_url,
        token=args.token_file.read_text().strip() if args.token_file else None,
        expected_partners=args.expected_partners,
        alert_webhook=args.alert_webhook,
    )
    config.check_bind(args.host)
    uvicorn.run(create_console(config), host=args.host, port=args.port, log_level="info")
    return 0


__all__ = ["build_console_parser", "run_console"]
