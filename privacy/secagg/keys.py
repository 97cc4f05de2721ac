"""Key agreement, share encryption and Shamir sharing: Flower's building blocks.

``flwr.common.secure_aggregation.crypto`` does ECDH + HKDF (``generate_shared_key``),
Fernet (``encrypt``/``decrypt``) and Shamir sharing (``create_shares``/
``combine_shares``); the keys themselves are P-256 keys from ``cryptography``. A
private key is shared as its 32-byte scalar, so a reconstructed key can be checked
against the public key its owner announced.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    decrypt,
    encrypt,
    generate_shared_key,
)

from fedctr.privacy.secagg.errors import SecAggError

CURVE = ec.SECP256R1()
SCALAR_BYTES = 32


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE)


def private_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(SCALAR_BYTES, "big")


def private_from_bytes(raw: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), CURVE)
    except (ValueError, TypeError) as exc:
        raise SecAggError("not a P-256 private key") from exc


def public_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )


def public_from_bytes(raw: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, raw)
    except (ValueError, TypeError) as exc:
        raise SecAggError("not a P-256 public key") from exc


def shared_secret(own: ec.EllipticCurvePrivateKey, other: bytes) -> bytes:
    """32 bytes both ends derive (ECDH then HKDF-SHA256, Flower's ``generate_shared_key``)."""
    return base64.urlsafe_b64decode(generate_shared_key(own, public_from_bytes(other)))


def seal_for(own: ec.EllipticCurvePrivateKey, other: bytes, plaintext: bytes) -> bytes:
    """Encrypt for the holder of ``other`` (Fernet under the ECDH key)."""
    return encrypt(generate_shared_key(own, public_from_bytes(other)), plaintext)


def open_from(own: ec.EllipticCurvePrivateKey, other: bytes, ciphertext: bytes) -> bytes:
    try:
        return decrypt(generate_shared_key(own, public_from_bytes(other)), ciphertext)
    except Exception as exc:  # Fernet raises InvalidToken, malformed input ValueError
        raise SecAggError("a share does not decrypt under the agreed key") from exc


def split_secret(secret: bytes, threshold: int, holders: int) -> list[bytes]:
    """Shamir shares; share ``i`` (0-based) belongs to the ``i``-th holder."""
    return create_shares(secret, threshold, holders)


def join_shares(shares: list[bytes]) -> bytes:
    try:
        return combine_shares(shares)
    except (ValueError, IndexError) as exc:
        raise SecAggError("shares do not combine") from exc


def share_index(share: bytes) -> int:
    """The holder index (1-based) Flower's Shamir shares start with."""
    return int.from_bytes(share[:4], "little")


__all__ = [
    "join_shares",
    "new_private_key",
    "open_from",
    "private_bytes",
    "private_from_bytes",
    "public_bytes",
    "public_from_bytes",
    "seal_for",
    "share_index",
    "shared_secret",
    "split_secret",
]
