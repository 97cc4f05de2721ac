"""Ed25519 keys and signatures for ledgers and published models.

Private keys are PKCS8 PEM files written 0600 and never printed; public keys are
SubjectPublicKeyInfo PEM. Every verification failure raises the same opaque
:class:`SignatureInvalid`, whatever went wrong, so callers cannot leak why.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from fedctr.privacy.errors import PrivacyError


class SignatureInvalid(PrivacyError):
    """A signature does not verify against the given public key and data."""


class KeyFileError(PrivacyError):
    """A key file is missing, unreadable, of the wrong kind, or would be overwritten."""


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def pkcs8_pem(key: PrivateKeyTypes) -> bytes:
    """An unencrypted PKCS8 PEM of any private key (Ed25519 here, EC for TLS)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_file(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to a file created with mode 0600 (never readable by others, not even
    briefly); an existing file is refused unless ``overwrite``."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists; refusing to overwrite a private key") from exc
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an overwritten file keeps its old mode otherwise
        fh.write(data)
    return path


def save_private_key(key: Ed25519PrivateKey, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``key`` as PKCS8 PEM with mode 0600 (created that way, never chmod-ed later)."""
    return write_private_file(path, pkcs8_pem(key), overwrite=overwrite)


def save_public_key(key: Ed25519PublicKey | Ed25519PrivateKey, path: str | Path) -> Path:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    path = Path(path)
    path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot load Ed25519 private key from {path}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot load Ed25519 public key from {path}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Short, stable identifier of a key pair: SHA-256 of the raw public key, 16 hex."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def canonical_json(obj: Any) -> bytes:
    """The bytes that get signed: sorted keys, no spaces, no NaN/inf."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """Base64 Ed25519 signature of ``data``."""
    return base64.b64encode(key.sign(data)).decode()


def verify(public_key: Ed25519PublicKey, signature: str, data: bytes) -> None:
    """Raise :class:`SignatureInvalid` unless ``signature`` (base64) signs ``data``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, data)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise SignatureInvalid("signature verification failed") from exc


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "KeyFileError",
    "SignatureInvalid",
    "canonical_json",
    "generate_signing_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pkcs8_pem",
    "save_private_key",
    "save_public_key",
    "sha256_file",
    "sign",
    "verify",
    "write_private_file",
]
