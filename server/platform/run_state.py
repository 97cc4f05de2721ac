"""What a run needs to resume after the platform crashed: its last committed round.

A round is committed when its checkpoint, its ledger entries and its round-log line
are on disk; ``run-state.json`` is written last and names that round, the hash of
its checkpoint and the plan it belongs to. Resuming reads it, refuses a different
plan (another model, strategy, spec or round count would not be this run), loads the
checkpoint (its hash checked) and the strategy's own state, and continues with the
next round. Checkpoints are safetensors, never pickles.

Strategy state is what a server optimiser carries between rounds: the first and
second moments of Flower's FedOpt family (FedAdam, FedYogi, FedAdagrad). Strategies
without state (FedAvg, the robust ones) save nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.serverapp.strategy import Strategy
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy
from safetensors.torch import load as load_torch

from fedctr.durable import replace_file
from fedctr.models import state_dict_sha256
from fedctr.server.platform.errors import ResumeError

RUN_STATE_FILE = "run-state.json"
STATE_SCHEMA_VERSION = 1
_MOMENTS = ("m_t", "v_t")


@dataclass(frozen=True)
class RunState:
    """The last committed round of one run (``completed_round`` 0: none yet)."""

    run_id: str
    plan_hash: str
    completed_round: int
    checkpoint_sha256: str | None

    def save(self, work_dir: Path) -> None:
        body = {"schema_version": STATE_SCHEMA_VERSION, **asdict(self)}
        replace_file(work_dir / RUN_STATE_FILE, json.dumps(body, indent=2).encode(), mode=0o600)

    @classmethod
    def load(cls, work_dir: Path) -> RunState:
        path = work_dir / RUN_STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ResumeError(
                f"{path} does not exist: run {work_dir.name} never committed a round here "
                "(nothing to resume; start it without --resume)"
            ) from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise ResumeError(f"{path}: unreadable run state: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("schema_version") != STATE_SCHEMA_VERSION:
            raise ResumeError(f"{path}: run state schema is not {STATE_SCHEMA_VERSION}")
        try:
            state = cls(
                run_id=str(raw["run_id"]),
                plan_hash=str(raw["plan_hash"]),
                completed_round=int(raw["completed_round"]),
                checkpoint_sha256=raw["checkpoint_sha256"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResumeError(f"{path}: malformed run state: {exc}") from exc
        if state.completed_round < 0:
            raise ResumeError(f"{path}: completed_round must not be negative")
        return state


def plan_hash(
    *,
    run_id: str,
    rounds: int,
    spec_hash: str,
    model: Mapping[str, Any],
    strategy: Mapping[str, Any],
    seed: int,
) -> str:
    """What makes two runs the same run: resuming under another plan is refused."""
    canonical = json.dumps(
        {
            "run_id": run_id,
            "rounds": rounds,
            "spec_hash": spec_hash,
            "model": dict(model),
            "strategy": dict(strategy),
            "seed": seed,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def checkpoint_path(work_dir: Path, server_round: int) -> Path:
    return work_dir / "checkpoints" / f"round-{server_round:04d}.safetensors"


def strategy_state_path(work_dir: Path, server_round: int) -> Path:
    return work_dir / "checkpoints" / f"strategy-{server_round:04d}.safetensors"


def load_checkpoint(work_dir: Path, state: RunState) -> dict[str, torch.Tensor]:
    """The committed round's global model; its hash must be the one the state names."""
    path = checkpoint_path(work_dir, state.completed_round)
    try:
        weights = load_torch(path.read_bytes())
    except (OSError, SafetensorError) as exc:
        raise ResumeError(
            f"{path}: cannot read the checkpoint of round {state.completed_round}: {exc}"
        ) from exc
    if state_dict_sha256(weights) != state.checkpoint_sha256:
        raise ResumeError(
            f"{path}: checkpoint hash differs from the one committed in {RUN_STATE_FILE}; "
            "it was changed after the round committed"
        )
    return weights


def _innermost(strategy: Strategy) -> Strategy:
    """The aggregation strategy inside fedctr's wrappers (each keeps it as ``.strategy``)."""
    seen = strategy
    while isinstance(getattr(seen, "strategy", None), Strategy):
        seen = seen.strategy  # type: ignore[attr-defined]
    return seen


def save_strategy_state(strategy: Strategy, path: Path) -> bool:
    """Write the server optimiser's moments, if the strategy has any; True if written."""
    inner = _innermost(strategy)
    arrays: dict[str, np.ndarray] = {}
    for attr in _MOMENTS:
        value = getattr(inner, attr, None)
        if isinstance(value, dict):
            arrays.update({f"{attr}/{k}": np.ascontiguousarray(v) for k, v in value.items()})
    if not arrays:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, save_numpy(arrays), mode=0o600)
    return True


def restore_strategy_state(strategy: Strategy, path: Path) -> None:
    """Put saved moments back into the strategy (nothing to do if none were saved)."""
    if not path.exists():
        return
    try:
        arrays = load_numpy(path.read_bytes())
    except (OSError, SafetensorError) as exc:
        raise ResumeError(f"{path}: cannot read the strategy state: {exc}") from exc
    inner = _innermost(strategy)
    for attr in _MOMENTS:
        prefix = f"{attr}/"
        value = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        if value:
            if not hasattr(inner, attr):
                raise ResumeError(
                    f"{path}: holds {attr} but strategy {type(inner).__name__} has no such state"
                )
            setattr(inner, attr, value)


__all__ = [
    "RUN_STATE_FILE",
    "RunState",
    "checkpoint_path",
    "load_checkpoint",
    "plan_hash",
    "restore_strategy_state",
    "save_strategy_state",
    "strategy_state_path",
]
