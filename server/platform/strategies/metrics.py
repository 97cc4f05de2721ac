"""Aggregation of partner metrics: weighted means, except privacy, which takes the max.

Averaging epsilons would understate the privacy loss of the partner who spent the
most; the federation's privacy metric is its worst partner's.
"""

from __future__ import annotations

import math

from flwr.app import MetricRecord, RecordDict

from fedctr.privacy.wire import MAX_AGGREGATED


def aggregate_partner_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Example-weighted mean of every metric; max of epsilon and delta."""
    if not records:
        return MetricRecord({})
    metric_dicts = [next(iter(r.metric_records.values())) for r in records]
    weights = [float(m[weighted_by_key]) for m in metric_dicts]
    out: dict[str, float] = {}
    for key in metric_dicts[0]:
        values = [float(m[key]) for m in metric_dicts]
        if key == weighted_by_key:
            out[key] = sum(values)
        elif key in MAX_AGGREGATED:
            out[key] = max(values)
        else:
            finite = [(v, w) for v, w in zip(values, weights, strict=True) if math.isfinite(v)]
            wsum = sum(w for _, w in finite)
            out[key] = sum(v * w for v, w in finite) / wsum if wsum else math.nan
    return MetricRecord(out)


__all__ = ["aggregate_partner_metrics"]
