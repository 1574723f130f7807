"""The proxy CA's ``cryptography`` work: create the CA, read it, issue a leaf certificate.

Split from ``ca.py`` so that ``cryptography`` (~9 MiB of a daemon's memory) is imported only
when a CA is actually read: a proxy's first interception, or ``dfdaemon ca show``. ``ca.py``
imports this module where it first needs it; a starting daemon runs it as a command in a
child interpreter (``main``, from ``ca_files.py``) to create and check its CA.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from damselfly.core.errors import ConfigError

CA_VALIDITY = datetime.timedelta(days=3650)
CLOCK_SKEW = datetime.timedelta(minutes=5)

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CheckedCa(NamedTuple):
    """A CA read and checked, and the exact bytes it was read from."""

    cert: x509.Certificate
    key: CaKey
    cert_pem: bytes
    key_pem: bytes


def ensure_ca(cert_path: Path, key_path: Path, *, create: bool) -> CheckedCa:
    """The CA's certificate and key (``ConfigError`` when unreadable or not a pair), made
    first when ``create`` (the node's own CA) and it does not exist yet."""
    if create and not cert_path.exists():
        create_ca(cert_path, key_path)
    cert_pem, key_pem = _read(cert_path, "certificate"), _read(key_path, "key")
    key = read_key(key_path, key_pem)
    cert = read_cert(cert_path, cert_pem)
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise ConfigError(f"proxy CA certificate {cert_path}: not the certificate of {key_path}")
    return CheckedCa(cert, key, cert_pem, key_pem)


def _public_der(public: object) -> bytes:
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return b""  # not a key a CA here signs with: never the key's
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"proxy CA {what} {path}: {exc}") from exc


def issue_leaf(
    host: str, ca_cert: x509.Certificate, ca_key: CaKey, lifetime: float
) -> tuple[bytes, bytes]:
    """A new leaf for ``host``: (its chain up to the CA, its key), both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(host, key.public_key(), ca_cert, ca_key, lifetime)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    return chain, key_pem(key)


def create_ca(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "damselfly"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"damselfly proxy CA {socket.gethostname()}"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    write_private(key_path, key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _leaf(
    host: str,
    public: ec.EllipticCurvePublicKey,
    ca_cert: x509.Certificate,
    ca_key: CaKey,
    lifetime: float,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(seconds=lifetime))
        .add_extension(x509.SubjectAlternativeName([_general_name(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def fingerprint(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def read_cert(path: Path, pem: bytes | None = None) -> x509.Certificate:
    """The certificate in ``pem`` (default: read from ``path``, which names it in errors)."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes() if pem is None else pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"proxy CA certificate {path}: {exc}") from exc


def read_key(path: Path, pem: bytes | None = None) -> CaKey:
    try:
        data = path.read_bytes() if pem is None else pem
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"proxy CA key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"proxy CA key {path}: expected an EC or RSA key")
    return key


def key_pem(key: CaKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def main(argv: Sequence[str]) -> int:
    """``ensure_ca`` as a command (``ca_files.py`` runs it in a child interpreter): arguments
    CERT KEY [--create]; the PEM bytes it checked as JSON on stdout, or what went wrong as one
    line on stderr (exit 2)."""
    cert_path, key_path = Path(argv[0]), Path(argv[1])
    try:
        checked = ensure_ca(cert_path, key_path, create="--create" in argv[2:])
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"proxy CA {cert_path}: cannot create it: {exc}\n")
        return 2
    pems = {"cert": checked.cert_pem, "key": checked.key_pem}
    sys.stdout.write(json.dumps({k: base64.b64encode(v).decode("ascii") for k, v in pems.items()}))
    return 0
