"""How long each message round trip takes, as the platform sees it.

Wraps any strategy and writes one JSON line per round to ``timing.jsonl``: the
wall time of the train message round trip (send until the aggregate is ready). Partners
no longer report their compute time (it reveals their row counts; see
:mod:`fedctr.privacy.wire`); each partner node keeps its own in a local file
(:data:`fedctr.clients.node.ROUND_TIMES_FILE`), which ``bench/bench_rounds.py`` reads on
the one machine where it runs every party, to split wall time into compute and
overhead.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

logger = logging.getLogger(__name__)

TIMING_FILE = "timing.jsonl"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: Linux's ``VmHWM``, which starts afresh
    at exec (``ru_maxrss`` carries over a forking parent's peak), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RoundTimer(Strategy):
    """Delegate to ``strategy``; time each message round trip (see module doc)."""

    def __init__(
        self, strategy: Strategy, path: Path, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.strategy = strategy
        self.path = path
        self._clock = clock
        self._rows: dict[int, dict[str, float]] = {}
        self._started: dict[tuple[int, str], float] = {}

    def summary(self) -> None:
        self.strategy.summary()

    def _begin(self, server_round: int, kind: str) -> None:
        self._started[(server_round, kind)] = self._clock()

    def _end(self, server_round: int, kind: str, replies: int) -> None:
        row = self._rows.setdefault(server_round, {"round": server_round})
        row[f"{kind}_wall_s"] = self._clock() - self._started.pop((server_round, kind))
        row[f"{kind}_replies"] = replies
        row["platform_peak_rss_mb"] = peak_rss_mb()  # this process's, for bench_scale

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._begin(server_round, "train")
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        seen = 0

        def counted() -> Iterator[Message]:  # replies stream through, one at a time
            nonlocal seen
            for msg in replies:
                seen += 1
                yield msg

        # Ends once the aggregate exists: under secure aggregation the unmask step runs
        # inside aggregate_train and is part of the round's wall time.
        result = self.strategy.aggregate_train(server_round, counted())
        self._end(server_round, "train", seen)
        return result

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._begin(server_round, "evaluate")
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        replies = list(replies)
        self._end(server_round, "evaluate", len(replies))
        result = self.strategy.aggregate_evaluate(server_round, replies)
        self._write(server_round)
        return result

    def _write(self, server_round: int) -> None:
        row = self._rows.pop(server_round, None)
        if row is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps({k: round(v, 4) for k, v in row.items()}) + "\n")


def read_timing(path: Path) -> list[dict[str, float]]:
    """Rows of a ``timing.jsonl`` file (empty if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["TIMING_FILE", "RoundTimer", "peak_rss_mb", "read_timing"]
