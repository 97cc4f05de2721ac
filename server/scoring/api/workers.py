"""Several uvicorn workers, each with its own ``SO_REUSEPORT`` listening socket.

uvicorn's multi-worker mode shares one listening socket, and uvloop accepts every
pending connection at once: the first worker to wake took 10-15 of a load
generator's 16 keep-alive connections here, leaving the other core half idle.
With one socket per worker the kernel spreads new connections over the workers
by a hash of the client address. uvicorn's own supervisor still starts, pings,
restarts and stops the workers.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket that shares ``port`` with its siblings."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _OwnSocketWorker:
    """Worker entry point (pickled into each spawned worker): bind its own socket, serve."""

    def __init__(self, server: uvicorn.Server, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port

    def __call__(self, sockets: list[socket.socket] | None = None) -> None:
        own = reuse_port_socket(self.host, self.port)
        for inherited in sockets or ():
            inherited.close()  # never listened on: it takes no connections
        self.server.run(sockets=[own])


def run_workers(app: str, *, workers: int, host: str, port: int, **options: Any) -> None:
    """``uvicorn.run(app, workers=...)`` with one listening socket per worker."""
    config = uvicorn.Config(app, workers=workers, host=host, port=port, **options)
    placeholder = reuse_port_socket(host, port)  # holds the port; fails early if taken
    try:
        Multiprocess(
            config,
            target=_OwnSocketWorker(uvicorn.Server(config), host, port),
            sockets=[placeholder],
        ).run()
    finally:
        placeholder.close()


__all__ = ["reuse_port_socket", "run_workers"]
