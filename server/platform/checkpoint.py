"""Per-round checkpoints of the global model, written as safetensors (never a pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save

from fedctr.durable import replace_file
from fedctr.models import state_dict_sha256


def save_checkpoint(directory: Path, server_round: int, state: dict[str, torch.Tensor]) -> Path:
    """Write ``round-NNNN.safetensors`` atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"round-{server_round:04d}.safetensors"
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    metadata = {"round": str(server_round), "sha256": state_dict_sha256(tensors)}
    replace_file(path, save(tensors, metadata=metadata))
    return path


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, json.dumps(obj, indent=2).encode())


__all__ = ["save_checkpoint", "write_json"]
