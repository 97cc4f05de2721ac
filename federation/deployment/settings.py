"""Deployment settings: ``[superlink]`` in platform.toml, ``[node]`` in partner.toml.

The rest of each file belongs to the platform (:mod:`fedctr.federation.config`) and the
partner node (:mod:`fedctr.clients.config`); those loaders skip these sections, and this
module reads only them. Paths are relative to the file and absolute after loading.

platform.toml::

    [superlink]
    host = "0.0.0.0"             # interface the SuperLink listens on
    port = 9093                  # Fleet, Control and Runtime APIs (one port in Flower 1.41)
    address = "127.0.0.1:9093"   # what partners dial; its host is in the certificate
    ca_cert = "tls/ca.crt"       # give this file to partners
    server_cert = "tls/superlink.crt"
    server_key = "tls/superlink.key"
    node_keys = "node-keys"      # <partner_id>.pub: registered Flower node keys
    flwr_home = "flwr-home"      # FLWR_HOME of the SuperLink and `flwr` commands

partner.toml::

    [node]
    superlink = "127.0.0.1:9093"
    root_certificates = "tls/ca.crt"   # the platform's CA
    node_key = "keys/node.key"         # Flower node key: EC P-384, OpenSSH format
    runtime_port = 0                   # local Runtime API port; 0 = any free port
    idle_poll_s = 0.25                 # how often an idle node asks the platform for work
    flwr_home = "flwr-home"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedctr.federation.deployment.errors import DeploymentConfigError
from fedctr.federation.waits import Waits
from fedctr.validate import Checker


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeploymentConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentConfigError(f"{path}: not valid TOML: {exc}") from exc


def _section(raw: dict[str, Any], name: str, source: Path, known: set[str]) -> dict[str, Any]:
    if name not in raw:
        raise DeploymentConfigError(
            f"{source} has no [{name}] section; was it created by `fedctr "
            f"{'platform' if name == 'superlink' else 'partner'} init`?"
        )
    return Checker(DeploymentConfigError, str(source)).table(raw, name, known=known)


def _port(value: object, source: Path, key: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    port = Checker(DeploymentConfigError, str(source)).integer(value, key, minimum=low)
    if port > 65535:
        raise DeploymentConfigError(f"{source}: {key} must be a port number, got {value!r}")
    return port


def split_address(address: str, source: Path | str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DeploymentConfigError(f"{source}: {address!r} is not HOST:PORT")
    return host.strip("[]"), _port(int(port), Path(str(source)), "address")


class _Folder:
    """A party's folder: the config file's parent, with ``run/`` and ``logs/``."""

    source: Path

    @property
    def root(self) -> Path:
        return self.source.parent

    @property
    def state_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"


@dataclass(frozen=True, kw_only=True)
class SuperLinkSettings(_Folder):
    """Where and how the platform's SuperLink runs."""

    source: Path
    host: str
    port: int
    address: str
    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keys: Path
    flwr_home: Path

    @property
    def local_address(self) -> str:
        """Address for the platform's own tools (the Control API on this machine)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class NodeSettings(_Folder):
    """How a partner's SuperNode reaches the platform."""

    source: Path
    partner_id: str
    superlink: str
    root_certificates: Path | None
    node_key: Path
    runtime_port: int
    flwr_home: Path
    waits: Waits  # the fast-path SuperNode's and executor's polling


_SUPERLINK_KEYS = {
    "hosts",  # the certificate's SAN entries, informational
    "host",
    "port",
    "address",
    "ca_cert",
    "server_cert",
    "server_key",
    "node_keys",
    "flwr_home",
}
_NODE_KEYS = {
    "superlink",
    "root_certificates",
    "node_key",
    "runtime_port",
    "idle_poll_s",
    "flwr_home",
}


def _waits(table: dict[str, Any], source: Path) -> Waits:
    """``idle_poll_s``: an idle node asks the SuperLink for work this often. Raise it
    for many partners or a slow link; each round then starts up to that much later."""
    value = table.get("idle_poll_s", Waits().idle_poll)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DeploymentConfigError(f"{source}: [node] idle_poll_s must be seconds, got {value!r}")
    try:
        return Waits(idle_poll=float(value))
    except ValueError as exc:
        raise DeploymentConfigError(f"{source}: [node] idle_poll_s: {exc}") from exc


def load_superlink_settings(platform_toml: Path) -> SuperLinkSettings:
    source = Path(platform_toml).resolve()
    table = _section(read_toml(source), "superlink", source, _SUPERLINK_KEYS)
    base = source.parent
    port = _port(table.get("port", 9093), source, "[superlink] port")
    address = str(table.get("address", f"127.0.0.1:{port}"))
    split_address(address, source)
    return SuperLinkSettings(
        source=source,
        host=str(table.get("host", "0.0.0.0")),
        port=port,
        address=address,
        ca_cert=(base / table.get("ca_cert", "tls/ca.crt")).resolve(),
        server_cert=(base / table.get("server_cert", "tls/superlink.crt")).resolve(),
        server_key=(base / table.get("server_key", "tls/superlink.key")).resolve(),
        node_keys=(base / table.get("node_keys", "node-keys")).resolve(),
        flwr_home=(base / table.get("flwr_home", "flwr-home")).resolve(),
    )


def load_node_settings(partner_toml: Path) -> NodeSettings:
    source = Path(partner_toml).resolve()
    raw = read_toml(source)
    table = _section(raw, "node", source, _NODE_KEYS)
    partner = raw.get("partner", {})
    if not isinstance(partner, dict) or not partner.get("id"):
        raise DeploymentConfigError(f"{source}: [partner] needs 'id'")
    base = source.parent
    superlink = str(table.get("superlink", ""))
    split_address(superlink, source)
    root = table.get("root_certificates")
    if "node_key" not in table:
        raise DeploymentConfigError(f"{source}: [node] needs 'node_key'")
    return NodeSettings(
        source=source,
        partner_id=str(partner["id"]),
        superlink=superlink,
        root_certificates=(base / root).resolve() if root else None,
        node_key=(base / table["node_key"]).resolve(),
        runtime_port=_port(
            table.get("runtime_port", 0), source, "[node] runtime_port", allow_zero=True
        ),
        flwr_home=(base / table.get("flwr_home", "flwr-home")).resolve(),
        waits=_waits(table, source),
    )


__all__ = [
    "NodeSettings",
    "SuperLinkSettings",
    "load_node_settings",
    "load_superlink_settings",
    "read_toml",
    "split_address",
]
