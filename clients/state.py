"""The partner's durable privacy state: what it has spent, kept on its own disk.

The accountant history must survive rounds, node restarts and new runs, because a
budget covers the partner's whole participation. It is written atomically (temp
file, fsync, rename) *before* an update leaves the node, so a crash can only
over-count spending, never under-count it.

Two guards keep it honest. :func:`spend_session` holds an exclusive lock for a
whole round (load -> check -> train -> save -> ledger), so two concurrent training
messages can never both pass the budget check on the same spend. And
:func:`reconcile` checks the state against the partner's own signed ledger: a
missing or lagging state file is rebuilt from the verified ledger instead of
silently restarting spend at zero.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedctr.clients.errors import PartnerError
from fedctr.durable import replace_file
from fedctr.privacy import AccountantKind, AccountantStateError, DPSGDRound, PartnerAccountant
from fedctr.privacy.accounting import release_key
from fedctr.privacy.distributed.mechanism import skellam_of

logger = logging.getLogger(__name__)

STATE_FILE = "privacy-state.json"
LOCK_FILE = "privacy-state.lock"
STATE_VERSION = 1


class PartnerStateError(PartnerError):
    """The partner's stored privacy state is unreadable or inconsistent."""


@dataclass(frozen=True)
class PendingRound:
    """A round the node began: saved before any noise is drawn, cleared once its entry
    is in the ledger. Found on start-up, it means the node stopped mid-round."""

    run_id: str
    round: int
    mechanism: dict[str, Any]  # fedctr.privacy.ledger mechanism_dict of the approved release


@dataclass
class PartnerState:
    """Accountant history plus the rounds joined (run id, round) in order, and the round
    in progress if the node stopped during one."""

    accountant: PartnerAccountant
    rounds: list[tuple[str, int]]
    pending: PendingRound | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STATE_VERSION,
            "accountant": self.accountant.state_dict(),
            "rounds": [[run, rnd] for run, rnd in self.rounds],
            "pending": None
            if self.pending is None
            else {
                "run_id": self.pending.run_id,
                "round": self.pending.round,
                "mechanism": self.pending.mechanism,
            },
        }


def load_state(state_dir: Path, *, kind: AccountantKind) -> PartnerState:
    """Read the state, or a fresh one if the partner never trained."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return PartnerState(PartnerAccountant(kind=kind), [])
    try:
        raw = json.loads(path.read_text())
        if raw.get("schema_version") != STATE_VERSION:
            raise PartnerStateError(
                f"{path}: unsupported state version {raw.get('schema_version')}"
            )
        accountant = PartnerAccountant.from_state_dict(raw["accountant"])
        rounds = [(str(run), int(rnd)) for run, rnd in raw["rounds"]]
        held = raw.get("pending")
        pending = (
            None
            if held is None
            else PendingRound(str(held["run_id"]), int(held["round"]), dict(held["mechanism"]))
        )
    except (OSError, ValueError, KeyError, TypeError, AccountantStateError) as exc:
        raise PartnerStateError(
            f"{path}: privacy state is unreadable ({exc}); refusing to train rather than "
            "forget spent budget. Restore it from backup."
        ) from exc
    if accountant.kind != kind:
        raise PartnerStateError(
            f"{path}: spending was accounted with '{accountant.kind}', config asks for '{kind}'"
        )
    return PartnerState(accountant, rounds, pending)


def save_state(state_dir: Path, state: PartnerState) -> None:
    """Atomically replace the state file (fsync file and directory)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps(state.to_dict(), indent=1).encode()
    replace_file(state_dir / STATE_FILE, data, mode=0o600)  # the partner's own spend


@contextmanager
def spend_session(state_dir: Path) -> Iterator[None]:
    """Hold the partner's spend lock (``flock``, exclusive) for one whole round.

    Separate opens conflict on Linux even inside one process, so threads, processes
    and restarted nodes all queue here; the kernel drops the lock if the holder dies.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class LedgeredRelease:
    """What the partner's verified ledger says one round released."""

    run_id: str
    round: int
    mechanism: DPSGDRound
    unit_of_privacy: str = "example"
    released: bool = True  # False: a partner-withheld spend (the update never left)


def reconcile(
    state: PartnerState, ledgered: Sequence[LedgeredRelease], *, source: Path
) -> PartnerState:
    """The state to train from, given the releases in the partner's verified ledger.

    The state may be *ahead* of the ledger (a crash after the state was saved and
    before the entry was written: that update never left, its spend stays counted).
    A state *behind* the ledger (deleted, or restored from an old backup) is rebuilt
    from the ledger; a state that disagrees with it is refused.
    """
    ledger_rounds = [(r.run_id, r.round) for r in ledgered]
    if state.rounds[: len(ledger_rounds)] == ledger_rounds:
        return state
    if ledger_rounds[: len(state.rounds)] == state.rounds and all(
        s == _key(r.mechanism) for s, r in zip(state.accountant.keys(), ledgered, strict=False)
    ):
        logger.warning(
            "privacy state in %s is behind the ledger %s (%d of %d releases); rebuilding "
            "the spend from the verified ledger",
            source,
            source,
            len(state.rounds),
            len(ledgered),
        )
        accountant = PartnerAccountant(
            kind=state.accountant.kind,
            history=[
                (
                    r.mechanism.accounted_noise_multiplier,
                    r.mechanism.sample_rate,
                    r.mechanism.steps,
                )
                for r in ledgered
                if r.mechanism.distributed is None
            ],
            distributed=[s for r in ledgered if (s := skellam_of(r.mechanism)) is not None],
        )
        return PartnerState(accountant, ledger_rounds)
    raise PartnerStateError(
        f"{source}: the privacy state (rounds {state.rounds}) disagrees with the partner's "
        f"own ledger (rounds {ledger_rounds}); refusing to train. Restore the state file "
        "that belongs to this ledger, or move both aside to start a new participation."
    )


def _key(mechanism: DPSGDRound) -> tuple[Any, ...]:
    """What the accountant keeps of a ledgered release (see PartnerAccountant.keys)."""
    shared = skellam_of(mechanism)
    if shared is not None:
        return release_key(shared)
    return (mechanism.accounted_noise_multiplier, mechanism.sample_rate, mechanism.steps)


__all__ = [
    "LedgeredRelease",
    "PartnerState",
    "PartnerStateError",
    "PendingRound",
    "load_state",
    "reconcile",
    "save_state",
    "spend_session",
]
