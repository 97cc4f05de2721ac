"""Errors of the deployment launchers (init, start, run)."""

from __future__ import annotations

from fedctr.errors import FedctrError


class DeploymentError(FedctrError):
    """Base class of deployment errors: the message says what, why and what to do."""


class DeploymentConfigError(DeploymentError, ValueError):
    """A platform or partner folder is missing files or holds an invalid setting."""


class CredentialError(DeploymentError):
    """A key or certificate is missing, of the wrong kind, or would be overwritten."""


class ProcessFailed(DeploymentError):
    """A Flower process exited early or did not become ready in time."""

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NodeNotRegistered(ProcessFailed):
    """The SuperLink refused this node's key: the platform has not registered it."""


class TlsVerificationFailed(ProcessFailed):
    """The SuperNode could not verify the SuperLink's certificate (wrong or no CA)."""


__all__ = [
    "CredentialError",
    "DeploymentConfigError",
    "DeploymentError",
    "NodeNotRegistered",
    "ProcessFailed",
    "TlsVerificationFailed",
]
