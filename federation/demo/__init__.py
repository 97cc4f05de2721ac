"""``fedctr demo``: the whole story on one machine, and the pieces only it needs.

``run`` (the command), ``synthetic`` (a generated three-partner federation),
``datasets`` (real files given with ``--data``), ``baseline`` (the centralized
non-private comparison), ``scoring_check`` (score over HTTP), ``auditing`` (hand the
auditor copies). Nothing here is imported by the partner node or the platform.
"""
