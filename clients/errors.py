"""Errors of the partner node."""

from __future__ import annotations

from fedctr.errors import FedctrError


class PartnerError(FedctrError):
    """Base class of partner-node errors."""


class PartnerConfigError(PartnerError, ValueError):
    """A partner node config file is missing, malformed or inconsistent."""


__all__ = ["PartnerConfigError", "PartnerError"]
