"""Content hashes of model weights: the identity of a model everywhere in fedctr."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def state_dict_sha256(state: dict[str, torch.Tensor] | dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted name order.

    Independent of file format, so the hash a partner ledgers for its update and
    the one the platform computes for what it received are comparable.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        arr = np.ascontiguousarray(arr)
        digest.update(name.encode() + b"\0" + str(arr.dtype).encode() + b"\0")
        digest.update(repr(tuple(arr.shape)).encode() + b"\0")
        digest.update(arr.tobytes())
    return digest.hexdigest()


__all__ = ["state_dict_sha256"]
