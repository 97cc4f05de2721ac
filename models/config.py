"""Model hyper-parameters: a frozen, validated config that travels in the model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fedctr.models.errors import UnknownModelError


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build and how wide.

    ``name`` is a key of the model registry (``lr``, ``fm``, ``deepfm``, ``dcnv2``,
    ``fusion``). Fields a model does not use are ignored by it.
    """

    name: str = "deepfm"
    embed_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    cross_layers: int = 2
    cross_rank: int = 16
    modality_proj: int = 128
    fused_dim: int = 64

    def __post_init__(self) -> None:
        for attr in ("embed_dim", "cross_layers", "cross_rank", "modality_proj", "fused_dim"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"model config {attr} must be a positive integer, got {value!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"model config hidden sizes must be positive, got {self.hidden}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UnknownModelError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        data = dict(raw)
        if "hidden" in data:
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)


__all__ = ["ModelConfig"]
