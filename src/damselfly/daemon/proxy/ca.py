"""The node's proxy CA, and the short-lived certificates it issues to intercepted hosts.

Interception needs a CA the node's clients trust. Unless ``ca_cert``/``ca_key`` are
configured (e.g. the cluster's CA), the first start creates one with ``cryptography`` under
``<data dir>/proxy/``: ``ca.crt`` (public: give it to clients) and ``ca.key`` (mode 0600,
never leaves the node). Per host, a leaf certificate (ECDSA P-256, ``leaf_lifetime``) is
issued on first use and cached in memory with its TLS context; a certificate past half its
lifetime is replaced. Leaf keys are never written anywhere but a 0600 temporary file that is
removed as soon as ``ssl`` has read it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from damselfly.config.proxy import ProxySettings
from damselfly.core.errors import ConfigError

CA_VALIDITY = datetime.timedelta(days=3650)
CLOCK_SKEW = datetime.timedelta(minutes=5)
MAX_CACHED_HOSTS = 1024

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def ca_paths(settings: ProxySettings, data_dir: Path) -> tuple[Path, Path]:
    if settings.ca_cert is not None and settings.ca_key is not None:
        return settings.ca_cert, settings.ca_key
    return data_dir / "proxy" / "ca.crt", data_dir / "proxy" / "ca.key"


@dataclass(frozen=True)
class CaSummary:
    path: Path
    sha256: str  # colon-separated upper-case hex, as openssl prints it
    subject: str

    def lines(self) -> list[str]:
        return [f"path: {self.path}", f"sha256: {self.sha256}", f"subject: {self.subject}"]


def describe_ca(settings: ProxySettings, data_dir: Path) -> CaSummary:
    """What ``dfdaemon ca show`` prints; ``ConfigError`` when there is no CA yet."""
    cert_path, _ = ca_paths(settings, data_dir)
    return _summary(cert_path, _read_cert(cert_path))


class ProxyCA:
    def __init__(self, cert: x509.Certificate, key: CaKey, path: Path, lifetime: float) -> None:
        self.cert, self._key, self.path, self.lifetime = cert, key, path, lifetime
        self._contexts: dict[str, tuple[ssl.SSLContext, float]] = {}

    @classmethod
    def load_or_create(cls, settings: ProxySettings, data_dir: Path) -> ProxyCA:
        cert_path, key_path = ca_paths(settings, data_dir)
        if settings.ca_cert is None and not cert_path.exists():
            _create_ca(cert_path, key_path)
        key = _read_key(key_path)
        return cls(_read_cert(cert_path), key, cert_path, settings.leaf_lifetime)

    def summary(self) -> CaSummary:
        return _summary(self.path, self.cert)

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for ``host`` (cached)."""
        host = host.lower()
        cached = self._contexts.get(host)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        if len(self._contexts) >= MAX_CACHED_HOSTS:
            self._contexts.pop(next(iter(self._contexts)))
        context = self._issue(host)
        self._contexts[host] = (context, time.monotonic() + self.lifetime / 2)
        return context

    def _issue(self, host: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _leaf(host, key.public_key(), self.cert, self._key, self.lifetime)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(
            serialization.Encoding.PEM
        )
        with tempfile.TemporaryDirectory(prefix="damselfly-leaf-") as scratch:
            cert_file, key_file = Path(scratch, "leaf.crt"), Path(scratch, "leaf.key")
            cert_file.write_bytes(chain)
            _write_private(key_file, _key_pem(key))
            context.load_cert_chain(cert_file, key_file)
        return context


def _create_ca(cert_path: Path, key_path: Path) -> None:
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
    _write_private(key_path, _key_pem(key))
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


def _summary(path: Path, cert: x509.Certificate) -> CaSummary:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    return CaSummary(path, fingerprint, cert.subject.rfc4514_string())


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"proxy CA certificate {path}: {exc}") from exc


def _read_key(path: Path) -> CaKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"proxy CA key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"proxy CA key {path}: expected an EC or RSA key")
    return key


def _key_pem(key: CaKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
