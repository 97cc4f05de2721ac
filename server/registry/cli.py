"""``fedctr verify-model PATH --public-key KEY [--spec SPEC]``: a verdict and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from fedctr.errors import FedctrError
from fedctr.models.spec import FeatureSpec, builtin_spec_path, load_spec
from fedctr.privacy.signing import key_id, load_public_key
from fedctr.server.registry.reader import load_verified


def load_spec_arg(value: str) -> FeatureSpec:
    """A spec file path, or the name of a built-in spec (``demo``, ``criteo_attribution``)."""
    path = Path(value)
    return load_spec(path if path.exists() else builtin_spec_path(value))


def build_verify_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the ``verify-model`` arguments to ``parser`` (a fresh one if None)."""
    parser = parser or argparse.ArgumentParser(
        prog="fedctr verify-model",
        description="Verify a published model against the platform's Ed25519 public key.",
    )
    parser.add_argument("path", type=Path, help="registry directory (uses LATEST) or version dir")
    parser.add_argument("--public-key", type=Path, required=True, help="platform public key PEM")
    parser.add_argument(
        "--spec", default=None, help="feature spec file or built-in name the model must match"
    )
    return parser


def verify_model(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the verification for parsed ``args``; 0 if it verifies, 1 otherwise."""
    out = out or sys.stdout
    try:
        public_key = load_public_key(args.public_key)
        expected = load_spec_arg(args.spec).spec_hash if args.spec else None
        loaded = load_verified(args.path, public_key, expected_spec_hash=expected)
    except FedctrError as exc:
        out.write(f"FAILED  {args.path}: {exc}\n")
        return 1
    card = loaded.card
    out.write(
        f"OK  {loaded.version} ({loaded.path})\n"
        f"  signature   ed25519, key {key_id(public_key)}\n"
        f"  weights     sha256 {loaded.weights_sha256}\n"
        f"  card        sha256 {loaded.card_sha256}\n"
        f"  feature spec {loaded.spec.name} {loaded.spec.spec_hash[:16]}"
        f"{' (matches --spec)' if expected else ''}\n"
        f"  model       {card.model_name}, {card.rounds} rounds, "
        f"{len(card.partners)} partners\n"
    )
    for p in card.partners:
        out.write(
            f"    {p.partner_id}: epsilon={p.epsilon:.4g} delta={p.delta:.2g} "
            f"accountant={p.accountant} unit={p.unit_of_privacy}\n"
        )
    return 0


def verify_model_main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``fedctr verify-model``: parses ``argv`` (sys.argv[1:] if None)."""
    return verify_model(build_verify_parser().parse_args(argv))


__all__ = ["build_verify_parser", "load_spec_arg", "verify_model", "verify_model_main"]
