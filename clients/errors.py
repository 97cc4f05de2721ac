"""Errors of the partner node."""

from __future__ import annotations

from fedctr.errors import FedctrError


class PartnerError(FedctrError):
    """Base class of partner-node errors."""


class PartnerConfigError(PartnerError, ValueError):
    """A partner node config file is missing, malformed or inconsistent."""


class UnusableWeightsError(PartnerError, ValueError):
    """The platform sent weights the node will not train from (non-finite values).

    Decided on the platform's own input alone, so the refusal reveals nothing of the rows.
    """


class RoundAlreadyReleasedError(PartnerError):
    """The platform asked for a round this partner released already, from another model.

    A round is trained once: the same request is answered with the same release, a
    different one is refused (it would spend the budget twice for one round).
    """


__all__ = [
    "PartnerConfigError",
    "PartnerError",
    "RoundAlreadyReleasedError",
    "UnusableWeightsError",
]
