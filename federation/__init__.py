"""Flower wiring: ServerApp, ClientApp, message protocol, run config, launchers, CLI.

Thin on purpose: it connects the partner node (clients/) and the platform (server/);
it decides nothing about privacy or aggregation itself. Submodules are imported
explicitly (``fedctr.federation.server_app``) so importing the package stays cheap.
"""

__all__: list[str] = []
