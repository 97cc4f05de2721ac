"""The partner's copy of each update it released, so a round is never trained twice.

An update is a DP release: once its ledger entry is written it counts as spent, and
keeping the weights costs no further privacy. If the platform asks again for a round
the partner already released (the platform crashed and resumed, a reply was lost on
the way), the node re-sends the same update with the same signed entry instead of
training again, so no new noise is drawn and no epsilon is spent twice.

Files are content-addressed (``<update sha256>.safetensors``) and written before the
ledger entry that names them, so an entry never points at a missing update.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from fedctr.clients.state import PartnerStateError
from fedctr.durable import replace_file
from fedctr.models import state_dict_sha256

OUTBOX_DIR = "outbox"


class Outbox:
    """Released updates in the partner's state directory, by update hash."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / OUTBOX_DIR

    def _path(self, update_hash: str) -> Path:
        return self.directory / f"{update_hash}.safetensors"

    def keep(self, weights: dict[str, torch.Tensor]) -> str:
        """Store ``weights`` durably; returns their hash (what the ledger entry names)."""
        update_hash = state_dict_sha256(weights)
        path = self._path(update_hash)
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            tensors = {k: v.detach().contiguous() for k, v in weights.items()}
            replace_file(path, save(tensors), mode=0o600)
        return update_hash

    def get(self, update_hash: str) -> dict[str, torch.Tensor]:
        """The released update with this hash; refused if missing or not matching it."""
        path = self._path(update_hash)
        try:
            weights = load(path.read_bytes())
        except FileNotFoundError as exc:
            raise PartnerStateError(
                f"{path} is missing: the ledger says this update was released, but its copy "
                "is gone, so it cannot be re-sent (the node will not train the round again)"
            ) from exc
        except (OSError, SafetensorError) as exc:
            raise PartnerStateError(f"{path}: unreadable released update: {exc}") from exc
        if state_dict_sha256(weights) != update_hash:
            raise PartnerStateError(f"{path}: released update does not match its hash")
        return weights


__all__ = ["OUTBOX_DIR", "Outbox"]
