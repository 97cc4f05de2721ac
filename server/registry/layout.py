"""Where things live in a registry directory, and how the pointer moves atomically.

::

    registry/
      LATEST                      "v0002-1f2e3d4c5b6a\\n"
      models/v0001-<sha12>/model.safetensors, card.json, card.sig
      models/v0002-<sha12>/...

A version directory is assembled under a hidden temporary name and renamed into
place, and ``LATEST`` is replaced with ``os.replace`` after an fsync: a reader
never sees a half-written version or pointer.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedctr.durable import replace_file
from fedctr.privacy.card import CARD_FILE
from fedctr.server.registry.errors import ArtifactNotFound

LATEST_FILE = "LATEST"
MODELS_DIR = "models"
_LOCK_FILE = ".publish.lock"
VERSION_RE = re.compile(r"^v(\d{4,})-([0-9a-f]{12})$")


def version_id(sequence: int, weights_sha256: str) -> str:
    """``v0001-<first 12 hex of the weights hash>``: sortable and content-addressed."""
    return f"v{sequence:04d}-{weights_sha256[:12]}"


def list_versions(registry_dir: Path) -> list[str]:
    """Published versions, oldest first (temporary directories are ignored)."""
    models = Path(registry_dir) / MODELS_DIR
    if not models.is_dir():
        return []
    found = [p.name for p in models.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]
    return sorted(found, key=lambda v: int(VERSION_RE.match(v).group(1)))  # type: ignore[union-attr]


def next_sequence(registry_dir: Path) -> int:
    versions = list_versions(registry_dir)
    if not versions:
        return 1
    return int(VERSION_RE.match(versions[-1]).group(1)) + 1  # type: ignore[union-attr]


def read_latest(registry_dir: Path) -> str:
    """The version ``LATEST`` names; refuses anything that is not a version id."""
    path = Path(registry_dir) / LATEST_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactNotFound(
            f"no published model: cannot read {path} (publish one first)"
        ) from exc
    if not VERSION_RE.match(text):
        raise ArtifactNotFound(f"{path} does not name a model version")
    return text


def resolve_version_dir(path: Path) -> Path:
    """A version directory from either a registry directory (via LATEST) or itself."""
    path = Path(path)
    if (path / LATEST_FILE).is_file():
        return path / MODELS_DIR / read_latest(path)
    if (path / CARD_FILE).is_file():
        return path
    raise ArtifactNotFound(
        f"{path} is neither a model registry (no {LATEST_FILE}) nor a model version "
        f"directory (no {CARD_FILE})"
    )


def write_latest(registry_dir: Path, version: str) -> None:
    """Point ``LATEST`` at ``version``: temp file, fsync, ``os.replace``, fsync the dir."""
    if not VERSION_RE.match(version):
        raise ValueError(f"not a version id: {version!r}")
    replace_file(Path(registry_dir) / LATEST_FILE, f"{version}\n".encode("ascii"))


@contextmanager
def publish_lock(registry_dir: Path) -> Iterator[None]:
    """Serialise publishers so two of them never take the same sequence number."""
    fd = os.open(Path(registry_dir) / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


__all__ = [
    "LATEST_FILE",
    "MODELS_DIR",
    "VERSION_RE",
    "list_versions",
    "next_sequence",
    "publish_lock",
    "read_latest",
    "resolve_version_dir",
    "version_id",
    "write_latest",
]
