"""Keys and certificates a deployment needs, generated with ``cryptography``.

- A development CA and the SuperLink's TLS server certificate, with a SAN entry for
  every host partners dial (IP addresses as IP SANs, names as DNS SANs). A production
  platform replaces both with certificates from its own PKI; the file names stay.
- Each partner's Flower node key: an EC key on a NIST curve in OpenSSH private-key
  format, which is what ``flower-supernode --auth-supernode-private-key`` parses
  (PKCS8 PEM is rejected), and its OpenSSH public key for ``flwr supernode register``.

Private keys are created with mode 0600 (``O_EXCL``: never overwritten) and never
printed or logged.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedctr.federation.deployment.errors import CredentialError
from fedctr.privacy.signing import KeyFileError, pkcs8_pem, write_private_file

NODE_KEY_CURVE = ec.SECP384R1()
CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    """Where the SuperLink's TLS material lives (the CA key stays with the platform)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def write_private(path: Path, data: bytes) -> Path:
    """Create ``path`` with mode 0600 and write ``data``; refuse to overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return write_private_file(path, data)
    except KeyFileError as exc:
        raise CredentialError(str(exc)) from exc


def _write_public(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*allowed: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{name: name in allowed for name in _KEY_USAGES})


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def validate_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    """Hosts for the certificate: non-empty, no schemes or ports, no duplicates."""
    cleaned = tuple(dict.fromkeys(h.strip() for h in hosts if h.strip()))
    if not cleaned:
        raise CredentialError("--hosts needs at least one host name or IP address")
    for host in cleaned:
        if "/" in host or (":" in host and not _is_ipv6(host)):
            raise CredentialError(
                f"host {host!r} must be a bare name or IP address (no scheme, no port)"
            )
    return cleaned


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def create_dev_tls(
    folder: Path, *, hosts: Sequence[str], now: dt.datetime | None = None
) -> TlsFiles:
    """A dev CA and a SuperLink server certificate signed by it, valid for ``hosts``."""
    hosts = validate_hosts(hosts)
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedctr development CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage("digital_signature", "key_cert_sign", "crl_sign"),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage("digital_signature", "key_agreement"),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        server_cert=folder / "superlink.crt",
        server_key=folder / "superlink.key",
    )
    write_private(files.ca_key, pkcs8_pem(ca_key))
    write_private(files.server_key, pkcs8_pem(server_key))
    _write_public(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_public(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def certificate_hosts(cert_path: Path) -> tuple[str, ...]:
    """The SAN entries of a certificate, as strings (for checks and messages)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(ips + list(san.get_values_for_type(x509.DNSName)))


def create_node_key(private_path: Path, public_path: Path, *, comment: str = "") -> Path:
    """A Flower node key: EC P-384, OpenSSH private format (0600) + OpenSSH public key."""
    key = ec.generate_private_key(NODE_KEY_CURVE)
    write_private(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = public + (b" " + comment.encode() if comment else b"") + b"\n"
    return _write_public(public_path, line)


def load_node_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Parse an OpenSSH EC public key line; raise CredentialError if it is not one."""
    try:
        key = serialization.load_ssh_public_key(text.strip().encode())
    except (ValueError, TypeError) as exc:
        raise CredentialError("not an OpenSSH public key line") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CredentialError("a Flower node key must be an EC (ecdsa-sha2-nistp*) key")
    return key


def node_key_fingerprint(text: str) -> str:
    """SHA-256 fingerprint of a node public key, for logs and messages."""
    key = load_node_public_key(text)
    raw = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    return digest.finalize().hex()[:16]


__all__ = [
    "NODE_KEY_CURVE",
    "TlsFiles",
    "certificate_hosts",
    "create_dev_tls",
    "create_node_key",
    "load_node_public_key",
    "node_key_fingerprint",
    "validate_hosts",
    "write_private",
]
