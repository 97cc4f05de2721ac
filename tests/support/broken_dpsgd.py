"""Deliberately broken DP-SGD implementations, for the power tests of the empirical
audit and the release gate only (never registered by product code).

Each keeps the accounting as declared (the accountant is stepped with the noise
multiplier the node approved) and breaks what the optimizer does, through the public
DPOptimizer attributes of the returned PrivateTraining: exactly the bug the
ledger-based audit cannot see.
"""

from __future__ import annotations

from typing import Any

import torch

from fedctr.privacy.dpsgd import FedctrSparse, available_implementations, register_implementation
from fedctr.privacy.dpsgd.base import PrivateTraining


def _declared_accounting(engine: Any, private: PrivateTraining, kw: dict[str, Any]) -> None:
    sigma, rate = kw["noise_multiplier"], kw["sample_rate"]

    def hook(_optimizer: Any) -> None:
        engine.accountant.step(noise_multiplier=sigma, sample_rate=rate)

    private.optimizer.attach_step_hook(hook)


class _Broken(FedctrSparse):
    def make_private(self, engine: Any, **kw: Any) -> PrivateTraining:
        private = super().make_private(engine, **kw)
        _declared_accounting(engine, private, kw)
        self.corrupt(private.optimizer, kw)
        return private

    def corrupt(self, optimizer: Any, kw: dict[str, Any]) -> None:
        raise NotImplementedError


class _NoNoise(_Broken):
    def corrupt(self, optimizer: Any, kw: dict[str, Any]) -> None:
        optimizer.noise_multiplier = 0.0


class _TenthNoise(_Broken):
    def corrupt(self, optimizer: Any, kw: dict[str, Any]) -> None:
        optimizer.noise_multiplier = kw["noise_multiplier"] * 0.1


class _NoClipping(_Broken):
    """Clipping threshold x 1e6 and noise multiplier / 1e6: noise std is still sigma C."""

    def corrupt(self, optimizer: Any, kw: dict[str, Any]) -> None:
        optimizer.max_grad_norm = kw["max_grad_norm"] * 1e6
        optimizer.noise_multiplier = kw["noise_multiplier"] / 1e6


class _DenseNoiseOnly(_Broken):
    """Noise of the right scale on the nn.Linear parameters; none on embedding tables."""

    def corrupt(self, optimizer: Any, kw: dict[str, Any]) -> None:
        std = kw["noise_multiplier"] * kw["max_grad_norm"] / kw["expected_batch_size"]
        tables = {id(m.weight) for m in kw["module"].modules() if isinstance(m, torch.nn.Embedding)}
        noisy = [p for p in kw["module"].parameters() if id(p) not in tables]
        generator = torch.Generator().manual_seed(0)
        optimizer.noise_multiplier = 0.0
        clip_and_sum = optimizer.pre_step

        def pre_step(closure: Any = None) -> bool:
            done = clip_and_sum(closure)
            with torch.no_grad():
                for p in noisy:
                    p.grad.add_(torch.randn(p.shape, generator=generator) * std)
            return done

        optimizer.pre_step = pre_step


class _PerRowClippingForUsers(_Broken):
    """Claims user-level DP, samples users, but clips each *row* (the user groups are
    dropped): a user with r rows moves the model up to r x C, not C."""

    def corrupt(self, optimizer: Any, kw: dict[str, Any]) -> None:
        if kw.get("user_sampling") is None:
            raise AssertionError("this bug only exists under user-level DP")
        optimizer.user_level = False
        optimizer.expect_users = lambda groups: None


BROKEN = {
    "broken-sigma0": _NoNoise,
    "broken-sigma-tenth": _TenthNoise,
    "broken-no-clipping": _NoClipping,
    "broken-dense-noise-only": _DenseNoiseOnly,
}


# Bugs that exist only when the partner's unit is a user.
USER_LEVEL_BROKEN = {"broken-per-row-clipping": _PerRowClippingForUsers}


def register_broken_implementations() -> None:
    """Register every broken implementation once (a test module calls it at import)."""
    for name, cls in {**BROKEN, **USER_LEVEL_BROKEN}.items():
        if name not in available_implementations():
            register_implementation(name)(cls)


__all__ = ["BROKEN", "USER_LEVEL_BROKEN", "register_broken_implementations"]
