"""The operator console: a read-only page over federation runs, privacy spend, model
versions and serving arms (``overview`` gathers, ``page`` and ``plots`` render,
``app`` serves)."""

from fedctr.server.console.app import ConsoleConfig, ConsoleConfigError, create_console
from fedctr.server.console.overview import Overview, gather

__all__ = ["ConsoleConfig", "ConsoleConfigError", "Overview", "create_console", "gather"]
