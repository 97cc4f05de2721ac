"""Training-time accounting of a partner's whole participation, across rounds.

Wraps Opacus' accountants (RDP or PRV): the same objects the PrivacyEngine steps
during training. State is a plain, versioned dict so it survives in Flower's
``Context.state`` and on disk between rounds and restarts.
"""

from __future__ import annotations

import math
from typing import Any

from opacus.accountants import IAccountant, create_accountant

from fedctr.privacy.budget import ACCOUNTANT_KINDS, AccountantKind, DPSGDRound, PrivacyBudget
from fedctr.privacy.distributed.accounting import epsilon as distributed_epsilon
from fedctr.privacy.distributed.mechanism import SkellamRound, skellam_of
from fedctr.privacy.errors import AccountantStateError, AccountingMismatchError, BudgetExceededError

STATE_SCHEMA_VERSION = 1
History = list[tuple[float, float, int]]


class PartnerAccountant:
    """Everything a partner has released so far, and what one more round would cost.

    Local releases (Gaussian DP-SGD) are accounted by Opacus; distributed releases
    (Skellam shares under secure aggregation) by :mod:`fedctr.privacy.distributed`,
    against the platform. One participation is one or the other: their guarantees are
    stated against different parties and are not composed here.
    """

    def __init__(
        self,
        *,
        kind: AccountantKind,
        history: History | None = None,
        distributed: list[SkellamRound] | None = None,
    ) -> None:
        if kind not in ACCOUNTANT_KINDS:
            raise AccountantStateError(f"accountant kind must be one of {ACCOUNTANT_KINDS}")
        self.kind: AccountantKind = kind
        self._history: History = list(history or [])
        self._distributed: list[SkellamRound] = list(distributed or [])
        if self._history and self._distributed:
            raise AccountantStateError(
                "one participation holds local and distributed releases; their guarantees "
                "are against different parties and cannot be composed into one epsilon"
            )

    # ---- queries -------------------------------------------------------
    @property
    def history(self) -> History:
        """``(accounted noise multiplier, sample_rate, steps)`` per release, oldest first."""
        return list(self._history)

    @property
    def distributed(self) -> list[SkellamRound]:
        """Distributed releases, oldest first."""
        return list(self._distributed)

    @property
    def total_steps(self) -> int:
        return sum(steps for _, _, steps in self._history) + len(self._distributed)

    def keys(self) -> list[tuple[Any, ...]]:
        """One comparable key per release, in order (what reconciliation with the
        ledger compares)."""
        if self._distributed:
            return [release_key(r) for r in self._distributed]
        return list(self._history)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (0 before the first release); for distributed
        releases, against the platform (and the public)."""
        if self._distributed:
            return distributed_epsilon(self._distributed, delta)
        return _epsilon(self.kind, self._history, delta)

    def epsilon_against_coalition(self, delta: float, colluding: int) -> float:
        """Distributed releases only: against the platform and ``colluding`` partners."""
        return distributed_epsilon(self._distributed, delta, colluding=colluding)

    def epsilon_after(self, release: DPSGDRound, delta: float) -> float:
        """Epsilon the partner would have spent after ``release``."""
        self._same_mode(release)
        shared = skellam_of(release)
        if shared is not None:
            return distributed_epsilon([*self._distributed, shared], delta)
        return _epsilon(self.kind, [*self._history, _entry(release)], delta)

    def _same_mode(self, release: DPSGDRound) -> None:
        local, distributed = bool(self._history), bool(self._distributed)
        if (release.distributed is None and distributed) or (
            release.distributed is not None and local
        ):
            raise AccountantStateError(
                "this participation released in the other noise mode (local or distributed); "
                "one budget covers one mode: start a new participation to switch"
            )

    def would_exceed(self, release: DPSGDRound, budget: PrivacyBudget) -> bool:
        """True if ``release`` would push the partner past ``budget``."""
        return budget.exceeded_by(self.epsilon_after(release, budget.delta))

    # ---- updates -------------------------------------------------------
    def check(self, release: DPSGDRound, budget: PrivacyBudget) -> float:
        """Raise :class:`BudgetExceededError` unless ``release`` fits; return the
        epsilon it would leave the partner at."""
        eps_after = self.epsilon_after(release, budget.delta)
        if budget.exceeded_by(eps_after):
            raise BudgetExceededError(
                f"this round would raise epsilon from {self.epsilon(budget.delta):.4f} to "
                f"{eps_after:.4f}, over the partner's budget of epsilon={budget.epsilon} "
                f"(delta={budget.delta}); the node refuses the round"
            )
        return eps_after

    def record_interrupted(self, release: DPSGDRound) -> None:
        """Record a round the node stopped in before the accountant saw its steps: all
        the approved steps count (noise may have been drawn for each; never fewer)."""
        self._same_mode(release)
        shared = skellam_of(release)
        if shared is not None:
            self._distributed.append(shared)
        else:
            self._history.append(_entry(release))

    def record_distributed(self, release: DPSGDRound) -> None:
        """Record a distributed release (its one step was taken and its share drawn)."""
        self._same_mode(release)
        shared = skellam_of(release)
        if shared is None:
            raise AccountingMismatchError("record_distributed takes a distributed release")
        self._distributed.append(shared)

    def record_opacus_steps(self, release: DPSGDRound, opacus_accountant: IAccountant) -> None:
        """Record a finished round from what Opacus' accountant actually saw.

        The steps the optimizer took must be the approved ``release``: same noise,
        same sample rate, no more steps. Validate first, then change state.
        """
        seen = [(float(s), float(q), int(n)) for s, q, n in opacus_accountant.history]
        taken = sum(n for s, q, n in seen)
        sigma_approved = release.accounted_noise_multiplier
        for sigma, rate, _ in seen:
            if not (
                math.isclose(sigma, sigma_approved, rel_tol=1e-9)
                and math.isclose(rate, release.sample_rate, rel_tol=1e-9)
            ):
                raise AccountingMismatchError(
                    f"optimizer ran with noise {sigma} / sample rate {rate}, but the round was "
                    f"approved for {sigma_approved} / {release.sample_rate}"
                )
        if taken > release.steps:
            raise AccountingMismatchError(
                f"optimizer took {taken} steps; only {release.steps} were approved"
            )
        if taken:
            self._history.append((sigma_approved, release.sample_rate, taken))

    # ---- persistence ---------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": STATE_SCHEMA_VERSION,
            "kind": self.kind,
            "history": [[s, q, n] for s, q, n in self._history],
        }
        if self._distributed:
            out["distributed"] = [r.to_dict() for r in self._distributed]
        return out

    @classmethod
    def from_state_dict(cls, state: Any) -> PartnerAccountant:
        """Parse untrusted stored state field by field."""
        if not isinstance(state, dict):
            raise AccountantStateError("accountant state must be a mapping")
        if state.get("schema_version") != STATE_SCHEMA_VERSION:
            raise AccountantStateError(
                f"accountant state schema {state.get('schema_version')!r} is not "
                f"{STATE_SCHEMA_VERSION}"
            )
        history: History = []
        for item in state.get("history", []):
            try:
                sigma, rate, steps = item
                release = DPSGDRound(
                    noise_multiplier=float(sigma),
                    sample_rate=float(rate),
                    steps=int(steps),
                    max_grad_norm=1.0,
                )
            except (TypeError, ValueError) as exc:
                raise AccountantStateError(f"bad accountant history entry {item!r}") from exc
            history.append(_entry(release))
        try:
            distributed = [SkellamRound.from_dict(r) for r in state.get("distributed", [])]
        except (TypeError, ValueError) as exc:
            raise AccountantStateError(f"bad distributed accountant entry: {exc}") from exc
        return cls(kind=state.get("kind"), history=history, distributed=distributed)


def release_key(release: SkellamRound) -> tuple[Any, ...]:
    return (
        "skellam",
        release.noise_multiplier,
        release.sample_rate,
        release.min_shares,
        release.l2_sensitivity,
        release.l1_sensitivity,
    )


def _entry(release: DPSGDRound) -> tuple[float, float, int]:
    return (release.accounted_noise_multiplier, release.sample_rate, release.steps)


def _epsilon(kind: AccountantKind, history: History, delta: float) -> float:
    history = [h for h in history if h[2] > 0]
    if not history:
        return 0.0
    accountant = create_accountant(mechanism=kind)
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta=delta))


def opacus_accountant(kind: AccountantKind) -> IAccountant:
    """A fresh Opacus accountant to hand to the PrivacyEngine for one round."""
    return create_accountant(mechanism=kind)


__all__ = ["STATE_SCHEMA_VERSION", "PartnerAccountant", "opacus_accountant", "release_key"]
