"""Errors of the partner node."""

from __future__ import annotations

from fedctr.errors import FedctrError


class PartnerError(FedctrError):
    """Base class of partner-node errors."""


class DataFileError(PartnerError, ValueError):
    """A conversion log cannot be used: names the file and, where known, row and column."""

    def __init__(
        self, message: str, *, file: str, row: int | None = None, column: str | None = None
    ) -> None:
        super().__init__(message)
        self.file = file
        self.row = row
        self.column = column


class PartnerConfigError(PartnerError, ValueError):
    """A partner node config file is missing, malformed or inconsistent."""


__all__ = ["DataFileError", "PartnerConfigError", "PartnerError"]
