"""Fault injection: stop the platform at a named stage of a round, as a crash would.

Resuming is only believable if it is tested at every point a crash can land. The
ServerApp reads ``<stage>@<round>`` from its run config (``fault``) or from
``FEDCTR_FAULT`` (tests set them; nothing else does) and, at that stage of that
round, ends its own process with ``os._exit`` (no cleanup, no flush: what SIGKILL
leaves). In-process tests pass a plan that raises
:class:`InjectedCrash` instead. With no plan, :meth:`FaultPlan.hit` does nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from fedctr.server.platform.errors import PlatformError

logger = logging.getLogger(__name__)

FAULT_ENV = "FEDCTR_FAULT"
CRASH_EXIT_CODE = 86


class FaultStage(StrEnum):
    BEFORE_SEND = "before-send"  # the round is configured, nothing sent yet
    AFTER_REPLIES = "after-replies"  # replies received and journaled, not aggregated
    AFTER_AGGREGATION = "after-aggregation"  # aggregated, nothing of the round committed
    AFTER_COMMIT = "after-commit"  # the round committed, the next not begun
    DURING_PUBLISH = "during-publish"  # model signed into the registry, not yet ledgered


class InjectedCrash(PlatformError):
    """Raised (in-process tests) where a crash was injected."""


@dataclass(frozen=True)
class FaultPlan:
    """Crash at ``stage`` of ``server_round`` (``None``: never)."""

    stage: FaultStage | None = None
    server_round: int = 0
    exit_process: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FaultPlan:
        return cls.from_value(environ.get(FAULT_ENV, ""))

    @classmethod
    def from_value(cls, value: str) -> FaultPlan:
        """``<stage>@<round>`` (empty: no fault); the process exits at that point."""
        value = value.strip()
        if not value:
            return cls()
        stage, _, rnd = value.partition("@")
        try:
            return cls(FaultStage(stage), int(rnd or 0), exit_process=True)
        except ValueError as exc:
            raise PlatformError(
                f"{FAULT_ENV}={value!r}: expected <stage>@<round> with stage one of "
                f"{[s.value for s in FaultStage]}"
            ) from exc

    def hit(self, stage: FaultStage, server_round: int) -> None:
        if self.stage is not stage or server_round != self.server_round:
            return
        logger.critical("injected crash at %s of round %d", stage.value, server_round)
        if self.exit_process:
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
        raise InjectedCrash(f"injected crash at {stage.value} of round {server_round}")


__all__ = ["CRASH_EXIT_CODE", "FAULT_ENV", "FaultPlan", "FaultStage", "InjectedCrash"]
