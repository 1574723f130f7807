"""The cluster CA: one self-signed ECDSA P-256 certificate and its key, in a directory.

``damselfly ca init --dir D`` writes ``D/ca.crt`` (0644) and ``D/ca.key`` (0600) in a 0700
directory. Every key is ECDSA P-256 signed with SHA-256: the one choice that BoringSSL (inside
grpcio), OpenSSL (Python's ``ssl``) and every other TLS 1.3 stack accept for certificates;
Ed25519 certificates are not accepted everywhere, so they are not offered.

The CA's *fingerprint* (``sha256:<hex of the DER certificate>``) is what an enrolling node is
given out of band to pin the CA on first contact (``enrollment.py``).
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from damselfly.security.errors import SecurityError
from damselfly.security.files import (
    CLUSTER_SECRET_NAME,
    PUBLIC_FILE_MODE,
    make_private_dir,
    read_file,
    read_secret,
    write_file,
    write_secret,
)

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
DEFAULT_CA_YEARS = 10
FINGERPRINT_PREFIX = "sha256:"
# The CA certificate is back-dated a little: clocks of a cluster's machines disagree.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class ClusterCA:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    directory: Path

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.certificate)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(data: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SecurityError(f"{where}: not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SecurityError(f"{where}: expected an EC private key")
    return key


def cert_from_pem(data: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise SecurityError(f"{where}: not a PEM certificate") from exc


def fingerprint_of(certificate: x509.Certificate) -> str:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def init_ca(
    directory: Path,
    *,
    name: str = "damselfly cluster CA",
    validity_years: int = DEFAULT_CA_YEARS,
    now: datetime.datetime | None = None,
) -> ClusterCA:
    """Create a new CA in ``directory``; refuses to overwrite an existing one."""
    if not 1 <= validity_years <= 100:
        raise SecurityError(f"CA validity {validity_years} years: expected 1 to 100")
    if (directory / CA_KEY_NAME).exists() or (directory / CA_CERT_NAME).exists():
        raise SecurityError(f"{directory}: a CA already exists there; not overwriting it")
    key = new_private_key()
    certificate = _self_signed(key, name, validity_years, now or utc_now())
    make_private_dir(directory)
    write_secret(directory / CA_KEY_NAME, key_to_pem(key))
    write_secret(directory / CLUSTER_SECRET_NAME, secrets.token_hex(32).encode() + b"\n")
    write_file(
        directory / CA_CERT_NAME,
        certificate.public_bytes(serialization.Encoding.PEM),
        mode=PUBLIC_FILE_MODE,
    )
    return ClusterCA(certificate, key, directory)


def _self_signed(
    key: ec.EllipticCurvePrivateKey, name: str, years: int, now: datetime.datetime
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public = key.public_key()
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def cluster_secret(ca: ClusterCA) -> bytes | None:
    """The cluster's key for private task ids, if this CA has one (``init_ca`` makes it)."""
    path = ca.directory / CLUSTER_SECRET_NAME
    if not path.exists():
        return None
    return read_secret(path).strip() or None


def hand_out_cluster_secret(ca: ClusterCA, directory: Path) -> None:
    """Put the cluster secret next to a node's material (``ca issue``, the demo)."""
    secret = cluster_secret(ca)
    if secret is not None:
        make_private_dir(directory)
        write_secret(directory / CLUSTER_SECRET_NAME, secret + b"\n")


def load_ca(directory: Path) -> ClusterCA:
    """The CA in ``directory``; its key must be 0600 (or stricter)."""
    key_path = directory / CA_KEY_NAME
    cert_path = directory / CA_CERT_NAME
    key = key_from_pem(read_secret(key_path), str(key_path))
    certificate = cert_from_pem(read_file(cert_path), str(cert_path))
    if certificate.public_key() != key.public_key():
        raise SecurityError(f"{directory}: {CA_CERT_NAME} does not belong to {CA_KEY_NAME}")
    return ClusterCA(certificate, key, directory)


def load_ca_certificate(path: Path) -> x509.Certificate:
    return cert_from_pem(read_file(path), str(path))
