"""How often the fast-path processes poll, in seconds (stock Flower 1.41 in comments).

The launchers pass these to the SuperNode and executor processes they start as
``FEDCTR_WAIT_<NAME>`` environment variables; :mod:`federation.deployment.
flower_runtime` applies them.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Waits:
    """How often the patched processes poll (seconds); stock values in comments.

    Shorter is not always faster: on 2 cores the SuperLink's HTTP API spent ~0.4 s of
    CPU per second answering polls while the partners trained, so an idle poll of
    0.2 s made rounds slower (2.1-2.6 s of overhead) than 0.5 s (1.7 s); 1.0 s was
    slower again (latency). ``bench/bench_rounds.py`` measures the trade.
    """

    idle_poll: float = 0.5  # SuperNode: nothing to do, ask the SuperLink again (3 s)
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
