"""The record-level empirical audit: one training run of the partner's real path with
canaries (Steinke, Nasr & Jagielski 2023). The bound itself is the auditor's
(:mod:`fedctr.privacy.audit.one_run`); this package only runs the partner node.
"""
