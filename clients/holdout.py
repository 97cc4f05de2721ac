"""The partner's holdout key: which rows are held out, stable and secret.

A row goes to the holdout iff ``blake2b(row key, key=K, digest_size=8)`` read as a
big-endian integer, divided by 2**64, is below the holdout fraction (see
:meth:`fedctr.models.logs.reader.EncodedData.split`). ``K`` is 32 random bytes created once in the
partner's state directory (mode 0600) and read on every later start, so

- a row keeps its side across restarts, new runs and a log that grows or shrinks
  (adding or removing one row moves no other row), and
- nobody without the partner's state directory, the platform included, can tell
  which of the partner's rows trained the model and which were held out.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import stat
from pathlib import Path

from fedctr.clients.state import PartnerStateError
from fedctr.durable import replace_file

KEY_FILE = "holdout-key"
LOCK_FILE = ".holdout-key.lock"
KEY_BYTES = 32


class HoldoutKeyError(PartnerStateError):
    """The partner's holdout key file exists but cannot be used (a privacy-state error)."""


def holdout_key(state_dir: Path) -> bytes:
    """The partner's secret holdout key: read from ``state_dir``, created there once.

    Creation is atomic (:func:`fedctr.durable.replace_file`, mode 0600) and serialized
    by a lock file, so concurrent first starts agree on one key. A key file of the
    wrong size is refused rather than replaced: a new key would silently move rows
    that trained earlier rounds into the holdout.
    """
    state_dir = Path(state_dir)
    path = state_dir / KEY_FILE
    key = _read(path)
    if key is not None:
        return key
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        key = _read(path)  # another process may have created it meanwhile
        if key is None:
            key = secrets.token_bytes(KEY_BYTES)
            replace_file(path, key, mode=0o600)  # the partner's own secret
        return key
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            key = fh.read(KEY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HoldoutKeyError(
            f"{path}: the holdout key is unreadable ({exc}); restore it from backup (a new "
            "key would move rows between training and holdout)"
        ) from exc
    if not stat.S_ISREG(mode) or len(key) != KEY_BYTES:
        raise HoldoutKeyError(
            f"{path}: the holdout key must be a file of {KEY_BYTES} bytes; restore it from "
            "backup, or delete it to draw a new one (this moves rows between training and "
            "holdout)"
        )
    return key


def seed_key(seed: int) -> bytes:
    """A *public* holdout key derived from ``seed``, for benchmarks and tests.

    Anyone who knows the seed can recompute the split; a partner node uses
    :func:`holdout_key` instead.
    """
    return hashlib.blake2b(f"fedctr-holdout-seed:{int(seed)}".encode(), digest_size=32).digest()


__all__ = ["KEY_BYTES", "KEY_FILE", "HoldoutKeyError", "holdout_key", "seed_key"]
