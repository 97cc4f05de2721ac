"""What the utility benchmark compares: training settings side by side, same test rows.

Every setting of a (dataset, model) pair is scored against the centralized
non-private reference of the same pair and seed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    """One row of the table (before averaging over seeds)."""

    key: str
    partners: int  # 0: centralized
    iid: bool = True
    epsilon: float | None = None  # None: no DP
    # None: local DP-SGD (the private recipe). k: distributed DP under secure aggregation,
    # federated SGD with Skellam shares that reach the budget in sums of k partners
    # (k = 1: each partner adds all its noise itself, the same algorithm with local noise).
    noise_shares: int | None = None
    # centralized only: train like the distributed-DP recipe (full-batch steps, Adam),
    # without noise or partitions: that recipe's own non-private, central baseline
    full_batch: bool = False

    @property
    def centralized(self) -> bool:
        return self.partners == 0

    @property
    def label(self) -> str:
        if self.centralized:
            return "centralized, non-private" + (", full batch" if self.full_batch else "")
        split = "IID" if self.iid else "non-IID"
        privacy = "non-private" if self.epsilon is None else f"DP eps={self.epsilon:g}"
        if self.noise_shares is not None:
            privacy += (
                ", FedSGD, local Skellam noise"
                if self.noise_shares == 1
                else f", FedSGD, distributed noise over {self.noise_shares} (SecAgg+)"
            )
        return f"federated {self.partners} {split}, {privacy}"

    @property
    def short_label(self) -> str:
        """Column header of the ΔAUC pivot (DP settings have 3 partners unless named)."""
        split = "IID" if self.iid else "non-IID"
        if self.epsilon is None:
            return f"fed {self.partners} {split}"
        fed = "" if self.partners == 3 else f"fed {self.partners} "
        mode = ""
        if self.noise_shares is not None:
            mode = "FedSGD local " if self.noise_shares == 1 else "distributed "
        return f"{mode}DP ε={self.epsilon:g} {fed}{split}"

    def pivot_order(self) -> tuple[bool, float, int, bool]:
        """Non-private first, then by falling epsilon; fewer partners, IID first."""
        return (self.epsilon is not None, -(self.epsilon or 0.0), self.partners, not self.iid)


CENTRAL = Scenario("central", 0)
CENTRAL_FULL_BATCH = Scenario("central-fullbatch", 0, full_batch=True)

ALL: tuple[Scenario, ...] = (
    CENTRAL,
    Scenario("fed3-iid", 3, iid=True),
    Scenario("fed3-noniid", 3, iid=False),
    Scenario("fed10-iid", 10, iid=True),
    Scenario("fed10-noniid", 10, iid=False),
    Scenario("dp8-fed3-noniid", 3, iid=False, epsilon=8.0),
    Scenario("dp3-fed3-noniid", 3, iid=False, epsilon=3.0),
    Scenario("dp1-fed3-noniid", 3, iid=False, epsilon=1.0),
    Scenario("dp8-fed3-iid", 3, iid=True, epsilon=8.0),
    Scenario("dp3-fed3-iid", 3, iid=True, epsilon=3.0),
    Scenario("dp1-fed3-iid", 3, iid=True, epsilon=1.0),
    Scenario("dp8-fed10-noniid", 10, iid=False, epsilon=8.0),
    # Distributed DP (issue 17) and its full-batch central baseline: asked for by name.
    CENTRAL_FULL_BATCH,
    *(
        Scenario(f"{kind}{eps:g}-fed3-noniid", 3, iid=False, epsilon=eps, noise_shares=shares)
        for eps in (8.0, 3.0, 1.0)
        for kind, shares in (("ddp", 3), ("fsgd-ldp", 1))
    ),
)
BY_KEY = {s.key: s for s in ALL}

# The full table: everything but DP over 10 partners (each with a tenth of the rows,
# 10x the DP-SGD steps of 3 partners); ask for it with --scenarios dp8-fed10-noniid.
DEFAULT: tuple[str, ...] = tuple(
    s.key
    for s in ALL
    if s.key != "dp8-fed10-noniid" and s.noise_shares is None and not s.full_batch
)

QUICK: tuple[str, ...] = ("central", "fed3-noniid", "dp8-fed3-noniid")


def select(keys: list[str] | None, *, quick: bool) -> list[Scenario]:
    """The scenarios named (central always first), or the default set."""
    chosen = list(keys) if keys else list(QUICK if quick else DEFAULT)
    unknown = sorted(set(chosen) - set(BY_KEY))
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; choose from {list(BY_KEY)}")
    return [CENTRAL, *(BY_KEY[k] for k in chosen if k != "central")]


__all__ = ["ALL", "BY_KEY", "CENTRAL", "DEFAULT", "QUICK", "Scenario", "select"]
