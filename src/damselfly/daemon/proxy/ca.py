"""The node's proxy CA, and the short-lived certificates it issues to intercepted hosts.

Interception needs a CA the node's clients trust. Unless ``ca_cert``/``ca_key`` are
configured (e.g. the cluster's CA), the first start creates one with ``cryptography`` under
``<data dir>/proxy/``: ``ca.crt`` (public: give it to clients) and ``ca.key`` (mode 0600,
never leaves the node). Per host, a leaf certificate (ECDSA P-256, ``leaf_lifetime``) is
issued on first use and cached in memory with its TLS context; a certificate past half its
lifetime is replaced. Leaf keys are never written anywhere but a 0600 temporary file that is
removed as soon as ``ssl`` has read it.

The ``cryptography`` work is in ``ca_certs.py``, imported where a CA is first read: a node
without the proxy never loads ``cryptography`` (~9 MiB of its memory), and a running proxy
only at its first interception. At a daemon's start ``for_proxy`` has a child interpreter
create the node's CA and check either CA (``ca_files.py``).
"""

from __future__ import annotations

import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from damselfly.config.proxy import ProxySettings

if TYPE_CHECKING:  # ca_certs (cryptography) is imported where a CA is first needed
    from cryptography import x509

    from damselfly.daemon.proxy.ca_certs import CaKey

MAX_CACHED_HOSTS = 1024


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
    from damselfly.daemon.proxy import ca_certs

    cert_path, _ = ca_paths(settings, data_dir)
    return _summary(cert_path, ca_certs.read_cert(cert_path))


class ProxyCA:
    """The CA's files; its certificate and key are read (with ``cryptography``) on first use."""

    def __init__(self, path: Path, key_path: Path, lifetime: float) -> None:
        self.path, self.key_path, self.lifetime = path, key_path, lifetime
        self._pems: tuple[bytes, bytes] | None = None  # as checked at the start, to read later
        self._material: tuple[x509.Certificate, CaKey] | None = None
        self._contexts: dict[str, tuple[ssl.SSLContext, float]] = {}

    @classmethod
    def load_or_create(cls, settings: ProxySettings, data_dir: Path) -> ProxyCA:
        """The CA, read now (``dfdaemon ca show``); the node's own is created if missing."""
        from damselfly.daemon.proxy import ca_certs

        ca = cls(*ca_paths(settings, data_dir), settings.leaf_lifetime)
        checked = ca_certs.ensure_ca(ca.path, ca.key_path, create=settings.ca_cert is None)
        ca._material = (checked.cert, checked.key)
        return ca

    @classmethod
    def for_proxy(cls, settings: ProxySettings, data_dir: Path) -> ProxyCA:
        """The CA a starting proxy intercepts with, checked as ``load_or_create`` checks it
        (the same files, the same ``ConfigError`` now) by a child interpreter; the bytes it
        checked are kept and read by ``cryptography`` at the first interception."""
        from damselfly.daemon.proxy import ca_files

        ca = cls(*ca_paths(settings, data_dir), settings.leaf_lifetime)
        ca._pems = ca_files.checked_pems(ca.path, ca.key_path, own=settings.ca_cert is None)
        return ca

    @property
    def cert(self) -> x509.Certificate:
        return self._read()[0]

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
        from damselfly.daemon.proxy import ca_certs

        ca_cert, ca_key = self._read()
        chain, key = ca_certs.issue_leaf(host, ca_cert, ca_key, self.lifetime)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        with tempfile.TemporaryDirectory(prefix="damselfly-leaf-") as scratch:
            cert_file, key_file = Path(scratch, "leaf.crt"), Path(scratch, "leaf.key")
            cert_file.write_bytes(chain)
            ca_certs.write_private(key_file, key)
            context.load_cert_chain(cert_file, key_file)
        return context

    def _read(self) -> tuple[x509.Certificate, CaKey]:
        if self._material is None:
            from damselfly.daemon.proxy import ca_certs

            cert_pem, key_pem = self._pems or (None, None)
            key = ca_certs.read_key(self.key_path, key_pem)
            self._material = (ca_certs.read_cert(self.path, cert_pem), key)
        return self._material


def _summary(path: Path, cert: x509.Certificate) -> CaSummary:
    from damselfly.daemon.proxy import ca_certs

    return CaSummary(path, ca_certs.fingerprint(cert), cert.subject.rfc4514_string())
