"""Real deployments: a SuperLink at the platform, authenticated SuperNodes at partners.

``fedctr platform init|add-partner|start|run`` and ``fedctr partner init|start``
(registered by :mod:`fedctr.federation.deployment.commands`) create keys, certificates and
config files, and start, supervise and stop Flower's processes. Everything that
touches Flower internals lives in :mod:`fedctr.federation.flower_runtime`,
pinned to one Flower version. Submodules are imported explicitly.
"""

__all__: list[str] = []
