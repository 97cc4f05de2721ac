"""How often the fast-path processes poll, in seconds (stock Flower 1.41 in comments).

The launchers pass these to the SuperNode and executor processes they start as
``FEDCTR_WAIT_<NAME>`` environment variables; :mod:`fedctr.federation.deployment.
flower_runtime` applies them.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Waits:
    """How often the patched processes poll (seconds); stock values in comments.

    Every poll is an HTTP request the SuperLink answers with CPU the partners'
    training also wants. Before models were packed (:mod:`fedctr.federation.packing`) an
    idle poll of 0.2 s made rounds slower than 0.5 s; with packing, 3 runs each of
    ``bench/bench_rounds.py --rounds 6 --modes ours`` gave 1.09-1.33 s of overhead per
    round at 0.5 s, 0.91-1.01 s at 0.25 s and 0.86-0.99 s at 0.1 s. 0.25 s keeps most
    of the gain at 2.5x fewer requests per idle node than 0.1 s (4 per second).
    """

    idle_poll: float = 0.25  # SuperNode: nothing to do, ask the SuperLink again (3 s)
    reply_poll: float = 0.02  # SuperNode: wait for the ClientApp's reply (0.5 s)
    task_poll: float = 0.2  # executor: ask the SuperNode for a task (SuperExec: 1 s)
    pull_backoff: float = 0.05  # object not uploaded yet, first retry (1 s)
    pull_backoff_cap: float = 0.5  # (10 s)
    heartbeat: float = 10.0  # SuperNode heartbeat; offline after 2 missed (30 s)

    def __post_init__(self) -> None:
        for name in ("idle_poll", "reply_poll", "task_poll", "pull_backoff", "pull_backoff_cap"):
            value = getattr(self, name)
            if not 0.005 <= value <= 60:
                raise ValueError(f"{name} must be between 0.005 and 60 seconds, got {value}")
        if not 10 <= self.heartbeat <= 1800:  # Flower's HEARTBEAT_MIN/MAX_INTERVAL
            raise ValueError("heartbeat must be between 10 and 1800 seconds")


def waits_from_env() -> Waits:
    """Waits from ``FEDCTR_WAIT_<NAME>`` variables (set by the launchers)."""
    values = {}
    for name in inspect.signature(Waits).parameters:
        raw = os.environ.get(f"FEDCTR_WAIT_{name.upper()}")
        if raw is not None:
            values[name] = float(raw)
    return Waits(**values)


def waits_to_env(waits: Waits) -> dict[str, str]:
    return {
        f"FEDCTR_WAIT_{name.upper()}": repr(getattr(waits, name))
        for name in inspect.signature(Waits).parameters
    }


__all__ = ["Waits", "waits_from_env", "waits_to_env"]
