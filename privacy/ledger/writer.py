"""The append-only writer: one signed line per entry, durable before ``append`` returns.

Durability: the file is opened ``O_APPEND``, each entry goes out as one line, then
``fsync``; creating the file also fsyncs its directory. One writer at a time: an
exclusive ``flock`` is held while the ledger is open (the Flower ClientApp runs in a
fresh process per message, so open, append and close once per round).

Torn tail policy: a crash mid-write can leave an incomplete last line. Entries are
written *before* the release they describe leaves the node, so such a line records a
release that never happened. ``Ledger.open`` refuses to append after it unless asked
to repair (``repair_torn_tail=True`` or :func:`repair_torn_tail`), which moves the
torn bytes to ``<ledger>.torn`` for forensics, truncates the file, and logs a warning.
Damage anywhere else (bad lines, broken chain, foreign signatures) is never repaired
automatically: :class:`LedgerCorrupt`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, overload

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedctr.durable import fsync_dir
from fedctr.privacy.ledger.bodies import (
    LedgerBody,
    PartnerRelease,
    PartnerWithheld,
    PlatformEmpiricalAudit,
    PlatformPublish,
    PlatformReport,
    ident,
    parse_body,
)
from fedctr.privacy.ledger.entry import GENESIS_HASH, Entry, make_entry
from fedctr.privacy.ledger.errors import (
    LedgerCorrupt,
    LedgerError,
    LedgerLocked,
    LedgerTornTail,
    LedgerWriteRefused,
)
from fedctr.privacy.ledger.layout import allowed_kinds
from fedctr.privacy.ledger.reader import LedgerRead, TornTail, read_ledger
from fedctr.privacy.ledger.verify import verify_chain

logger = logging.getLogger(__name__)

TORN_SUFFIX = ".torn"
_BODY_TYPES = (
    PartnerRelease,
    PartnerWithheld,
    PlatformReport,
    PlatformPublish,
    PlatformEmpiricalAudit,
)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise LedgerLocked(
            f"{path} is open for writing in another process; one writer at a time"
        ) from exc


def _cut_torn_tail(fd: int, path: Path, tail: TornTail) -> None:
    """Move the torn bytes to ``<path>.torn``, truncate, fsync both (caller holds the lock)."""
    torn = os.pread(fd, tail.length, tail.offset)
    sidecar = path.with_name(path.name + TORN_SUFFIX)
    side_fd = os.open(sidecar, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _write_all(side_fd, torn + b"\n")
        os.fsync(side_fd)
    finally:
        os.close(side_fd)
    os.ftruncate(fd, tail.offset)
    os.fsync(fd)
    fsync_dir(path.parent)
    logger.warning(
        "ledger %s: removed a torn last line (%d bytes at offset %d, line %d), "
        "kept in %s; the release it began to record was never sent",
        path,
        tail.length,
        tail.offset,
        tail.line,
        sidecar,
    )


def repair_torn_tail(path: str | Path) -> TornTail | None:
    """Move an incomplete last line of ``path`` aside; return it, or None if there was none."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        _lock(fd, path)
        tail = read_ledger(path).torn_tail
        if tail is not None:
            _cut_torn_tail(fd, path, tail)
        return tail
    finally:
        os.close(fd)


def _round_key(body: LedgerBody) -> tuple[str, ...]:
    """At most one entry per key: a release per round, a report per partner and round,
    a release-gate audit per run and partner set."""
    if isinstance(body, PartnerRelease | PartnerWithheld):
        return (body.KIND, body.run_id, str(body.round))
    if isinstance(body, PlatformReport):
        return (body.KIND, body.run_id, str(body.round), body.partner_id)
    if isinstance(body, PlatformEmpiricalAudit):
        # One audit per configuration of a run: a platform cannot re-run a failed audit
        # of the same run until one passes and keep only that one.
        return (body.KIND, body.run_id, *body.partners)
    return (body.KIND, body.model_version)


class Ledger:
    """An open, locked, append-only ledger of one owner (a partner id or ``platform``)."""

    def __init__(
        self, *, fd: int, path: Path, owner: str, signing_key: Ed25519PrivateKey, read: LedgerRead
    ) -> None:
        self._fd: int | None = fd
        self._broken = False
        self.path = path
        self.owner = owner
        self._key = signing_key
        self._entries: list[Entry] = list(read.entries)
        self._keys = {_round_key(e.parsed_body()) for e in read.entries}

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        signing_key: Ed25519PrivateKey,
        owner: str,
        repair_torn_tail: bool = False,
    ) -> Ledger:
        """Open (creating if needed) the ledger of ``owner`` at ``path`` for appending.

        The existing chain is verified against ``signing_key``'s public key first:
        a ledger is never extended past damage it cannot account for.
        """
        path = Path(path)
        owner = ident(owner, "owner")
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError("signing_key must be an Ed25519PrivateKey")
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            fd = os.open(path, flags)
            created = False
        try:
            _lock(fd, path)
            if created:
                fsync_dir(path.parent)
            read = read_ledger(path)
            if read.torn_tail is not None:
                if not repair_torn_tail:
                    raise LedgerTornTail(
                        f"{path} ends in an incomplete line (line {read.torn_tail.line}, "
                        f"{read.torn_tail.length} bytes): a write was interrupted. Open with "
                        "repair_torn_tail=True (or call repair_torn_tail) to move it aside"
                    )
                _cut_torn_tail(fd, path, read.torn_tail)
                read = read_ledger(path)
            problems = [f"line {bad.line}: {bad.reason}" for bad in read.bad_lines]
            problems += [
                str(f)
                for f in verify_chain(
                    read.entries,
                    signing_key.public_key(),
                    source=path.name,
                    owner=owner,
                    lines=read.lines,
                )
            ]
            if problems:
                raise LedgerCorrupt(
                    f"{path} cannot be extended: {problems[0]}"
                    + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                    + "; keep it as evidence and start a new ledger"
                )
            return cls(fd=fd, path=path, owner=owner, signing_key=signing_key, read=read)
        except BaseException:
            os.close(fd)
            raise

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry so far, oldest first (e.g. to rebuild accounting state after a restart)."""
        return tuple(self._entries)

    @property
    def head_hash(self) -> str:
        return self._entries[-1].hash if self._entries else GENESIS_HASH

    @overload
    def append(self, body: LedgerBody, /) -> Entry: ...
    @overload
    def append(self, kind: str, body: Mapping[str, Any], /) -> Entry: ...

    def append(self, first: LedgerBody | str, data: Mapping[str, Any] | None = None, /) -> Entry:
        """Sign a body, chain it, write it durably, and return the entry as written.

        Pass a typed body (``append(PartnerRelease(...))``) or a kind and a plain
        mapping (``append("partner-release", {...})``), which is parsed like untrusted
        input. Write it *before* the release it records leaves the node.
        """
        if isinstance(first, str):
            body = parse_body(first, data)
        elif data is not None:
            raise TypeError("pass either a typed body, or a kind and a mapping")
        else:
            body = first
        if self._fd is None:
            raise LedgerError(f"{self.path} is closed")
        if self._broken:
            raise LedgerError(
                f"a write to {self.path} failed earlier; reopen it (repairing a torn tail)"
            )
        if not isinstance(body, _BODY_TYPES):
            raise TypeError(f"cannot record a {type(body).__name__} in a ledger")
        if body.KIND not in allowed_kinds(self.owner):
            raise LedgerWriteRefused(
                f"a {body.KIND!r} entry cannot go into {self.owner!r}'s ledger"
            )
        if isinstance(body, PartnerRelease | PartnerWithheld) and body.partner_id != self.owner:
            raise LedgerWriteRefused(
                f"a release of partner {body.partner_id!r} cannot go into {self.owner!r}'s ledger"
            )
        key = _round_key(body)
        if key in self._keys:
            raise LedgerWriteRefused(f"{self.path} already has an entry for {key}")
        entry = make_entry(
            seq=len(self._entries),
            owner=self.owner,
            body=body,
            prev_hash=self.head_hash,
            signing_key=self._key,
        )
        try:
            _write_all(self._fd, entry.canonical_bytes() + b"\n")
            os.fsync(self._fd)
        except OSError as exc:
            self._broken = True
            raise LedgerError(f"writing to {self.path} failed: {exc}") from exc
        self._entries.append(entry)
        self._keys.add(key)
        return entry

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["TORN_SUFFIX", "Ledger", "repair_torn_tail"]
