"""The FedAvg family's aggregate in O(model) memory: replies folded in as they arrive.

Flower's ``FedAvg.aggregate_train`` takes the round's replies as one list and
normalises by their total weight first, so the platform holds N updates at once. A
weighted mean needs only ``sum(w * x)`` and ``sum(w)``: :class:`RunningMean` keeps one
float64 sum per array, adds each accepted reply and lets it go, and hands the inner
strategy a single reply carrying the mean and the summed weight (as
:class:`~fedctr.server.platform.strategies.secagg.SecAggPlus` does with its unmasked
sum). FedAvg and FedProx return that mean; FedAdam takes its server step from it.

Median, trimmed mean and Krum need every update side by side (a coordinate-wise sort,
pairwise distances), so they keep the list and cost ``O(N x model)``.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Message, MessageType, RecordDict

from fedctr.privacy import wire as P
from fedctr.server.platform.strategies.metrics import aggregate_partner_metrics

#: Strategies whose aggregate is a function of the weighted sum of the updates.
FOLDABLE = ("fedavg", "fedprox", "fedadam")


class RunningMean:
    """``sum(w * x)`` per array of the global model (float64), one reply at a time."""

    def __init__(self, template: ArrayRecord) -> None:
        self._layout = {
            name: (tuple(a.shape), np.dtype(a.numpy().dtype)) for name, a in template.items()
        }
        self._sums = {
            name: np.zeros(shape, dtype=np.float64) for name, (shape, _) in self._layout.items()
        }
        self._metrics: list[RecordDict] = []
        self.weight = 0.0
        self.count = 0

    def problem(self, msg: Message) -> str | None:
        """Why a reply's arrays cannot be added (not the global model's names and shapes)."""
        arrays = msg.content[P.ARRAYS]
        if set(arrays) != set(self._layout):
            return "update does not have the global model's arrays"
        for name, array in arrays.items():
            if tuple(array.shape) != tuple(self._layout[name][0]):
                return f"update array '{name}' does not have the global model's shape"
        return None

    def add(self, msg: Message) -> None:
        """Fold one accepted reply in; its arrays can be released afterwards."""
        metrics = msg.content[P.METRICS]
        weight = float(metrics[P.AGGREGATION_WEIGHT])
        for name, array in msg.content[P.ARRAYS].items():
            self._sums[name] += weight * array.numpy().astype(np.float64, copy=False)
        self._metrics.append(RecordDict({P.METRICS: metrics}))
        self.weight += weight
        self.count += 1

    def reply(self) -> Message:
        """One reply standing for all: the weighted mean, weight ``sum(w)``, and the
        metrics the inner strategy would have aggregated from the replies."""
        mean = ArrayRecord(
            {
                name: torch.from_numpy(np.asarray(total / self.weight, dtype=self._layout[name][1]))
                for name, total in self._sums.items()
            }
        )
        metrics = aggregate_partner_metrics(self._metrics, P.AGGREGATION_WEIGHT)
        return Message(RecordDict({P.ARRAYS: mean, P.METRICS: metrics}), 0, MessageType.TRAIN)


__all__ = ["FOLDABLE", "RunningMean"]
