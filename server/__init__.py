"""The platform side: two deployables that share one registry.

- :mod:`fedctr.server.platform`: the aggregator (strategies, run orchestration,
  evaluation on the platform's own data, the platform ledger, signed publishing).
- :mod:`fedctr.server.scoring`: the real-time scoring service (FastAPI + kernels).
- :mod:`fedctr.server.registry`: signed model versions, written by the platform and
  verified by the scoring service.

Submodules are imported explicitly so that the scoring service never imports Flower
and the ServerApp never imports FastAPI.
"""
