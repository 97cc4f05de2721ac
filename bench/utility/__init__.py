"""Helpers of ``bench/bench_utility.py``: datasets, partner splits, in-process federation."""

__all__: list[str] = []
