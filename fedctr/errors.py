"""The root of every fedctr exception.

Each package defines its own subclasses, one meaning each, so callers can catch
``FedctrError`` at a process boundary (CLI, ServerApp, HTTP) and a specific
subclass everywhere else.
"""


class FedctrError(Exception):
    """Base class of all fedctr errors: the message says what, why and what to do."""


__all__ = ["FedctrError"]
