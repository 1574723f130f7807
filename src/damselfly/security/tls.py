"""TLS contexts and gRPC credentials from a node's material, and their renewal on disk.

Every context pins the *cluster CA* (never the system's trust store) and requires a client
certificate: a process without a certificate from this CA fails at the handshake, before any
request is read. Python ``ssl`` contexts are TLS 1.3 only, except the piece port's
(``piece_port=True``, below). gRPC (BoringSSL) exposes no version setting in Python; two
grpcio ends negotiate TLS 1.3.

The piece port carries every byte a node uploads or downloads, so its cipher is most of the
CPU that mTLS costs (``docs/benchmarks.md``, issue 11). CPython 3.11 cannot choose TLS 1.3
cipher suites (OpenSSL then picks AES-256-GCM), so the piece port speaks TLS 1.2 with a single
suite, ``ECDHE-ECDSA-AES128-GCM-SHA256``: the same mutual certificate check (both ends
present ECDSA P-256 certificates of the cluster CA), ephemeral ECDH keys (forward secrecy),
an AEAD cipher, AES-128-GCM (~15 % cheaper than AES-256-GCM here). Session tickets are off (a
ticket key would outlive the connections it protects) and so is renegotiation. Both ends of a
piece connection use this profile; a TLS 1.3-only peer cannot talk to it.

Host names: clients check that the server's certificate names the host they dialled (SAN DNS or
IP), or, inside the cluster, the name of the role they expect (``ChannelMaker.from_settings``:
``scheduler.role.damselfly.internal``, a name only the CA gives, so a peer that lists the
scheduler's IP address in its certificate still cannot pass for the scheduler). Servers do not
check client host names (clients have none to prove); they read the client's role and node id
from its certificate instead (``roles.py``).

Renewal: ``ReloadingFiles`` re-reads the three files when one of them changed (polled at most
once per ``poll_interval``); servers pick new material up at the next handshake
(``reloading_server_context``, ``grpc_server_credentials``), clients rebuild their channels when
``generation`` moves. A half-replaced pair (new key, old certificate) is not taken: the old
material stays until the pair matches again.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import grpc

from damselfly.config.security import TlsSettings
from damselfly.security.errors import SecurityError
from damselfly.security.files import (
    NodeFiles,
    NodeMaterial,
    check_secret_mode,
    files_stamp,
    node_files_from,
    read_material,
)
from damselfly.security.roles import Role, role_server_name

log = logging.getLogger(__name__)
Clock = Callable[[], float]


def check_material(material: NodeMaterial) -> None:
    """Refuse material whose key does not belong to its certificate, or no CA."""
    from cryptography import x509  # here, not at the top: a plain-text daemon never needs it
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(material.cert_pem)
        key = serialization.load_pem_private_key(material.key_pem, password=None)
        x509.load_pem_x509_certificates(material.ca_pem)
    except (ValueError, TypeError) as exc:
        raise SecurityError(f"TLS material is not valid PEM: {type(exc).__name__}") from exc
    if certificate.public_key() != key.public_key():
        raise SecurityError("the TLS key does not belong to the certificate")


class ReloadingFiles:
    """A node's material, re-read when the files change (renewal, a re-mounted Secret)."""

    def __init__(
        self, files: NodeFiles, *, poll_interval: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        self.files = files
        self._poll_interval = poll_interval
        self._clock = clock
        self._stamp = files_stamp(files)
        self._material = read_material(files)
        check_material(self._material)
        self._checked_at = clock()
        self.generation = 0

    def material(self) -> NodeMaterial:
        """The current material; re-read first if the files changed since the last look."""
        now = self._clock()
        if now - self._checked_at >= self._poll_interval:
            self._checked_at = now
            self._reload_if_changed()
        return self._material

    def _reload_if_changed(self) -> None:
        stamp = files_stamp(self.files)
        if stamp == self._stamp:
            return
        try:
            material = read_material(self.files)
            check_material(material)
        except SecurityError as exc:
            log.warning("TLS material in %s not reloaded (kept the previous): %s",
                        self.files.cert_file.parent, exc)  # fmt: skip
            return
        self._stamp, self._material = stamp, material
        self.generation += 1
        log.info("TLS material reloaded from %s", self.files.cert_file.parent)


# Python ssl ------------------------------------------------------------------------------

PIECE_PORT_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"


def _set_versions(context: ssl.SSLContext, *, piece_port: bool) -> None:
    if not piece_port:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(PIECE_PORT_CIPHER)
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION


def _base_context(purpose: int, material: NodeMaterial, *, piece_port: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    _set_versions(context, piece_port=piece_port)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=material.ca_pem.decode("ascii"))
    return context


def _load_chain(context: ssl.SSLContext, files: NodeFiles) -> None:
    check_secret_mode(files.key_file)
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as exc:
        raise SecurityError(f"{files.cert_file}: cannot use certificate and key: {exc}") from exc


def server_context(
    files: NodeFiles,
    *,
    client_cert: bool = True,
    material: NodeMaterial | None = None,
    piece_port: bool = False,
) -> ssl.SSLContext:
    """A TLS 1.3 server context (``piece_port``: the piece port's TLS 1.2 profile);
    ``client_cert=False`` makes the client certificate optional (the enrollment service:
    joining nodes have none yet; if one is sent it is verified)."""
    material = material or read_material(files)
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, material, piece_port=piece_port)
    context.verify_mode = ssl.CERT_REQUIRED if client_cert else ssl.CERT_OPTIONAL
    _load_chain(context, files)
    return context


def client_context(
    files: NodeFiles | None,
    *,
    ca_pem: bytes | None = None,
    check_hostname: bool = True,
    piece_port: bool = False,
) -> ssl.SSLContext:
    """A TLS 1.3 client context (``piece_port``: the piece port's TLS 1.2 profile) trusting
    only the cluster CA, presenting ``files``' certificate (``files=None``: no client
    certificate, only ``ca_pem`` trusted: a node enrolling)."""
    if ca_pem is None:
        if files is None:
            raise SecurityError("a client context needs node files or a CA")
        ca_pem = read_material(files).ca_pem
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _set_versions(context, piece_port=piece_port)
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    context.check_hostname = check_hostname
    if files is not None:
        _load_chain(context, files)
    return context


def reloading_server_context(
    source: ReloadingFiles, *, client_cert: bool = True, piece_port: bool = False
) -> ssl.SSLContext:
    """A server context that moves each new handshake to fresh material once the files
    changed (OpenSSL asks ``sni_callback`` on every ClientHello, with or without SNI)."""
    current = {"generation": source.generation}

    def build() -> ssl.SSLContext:
        return server_context(source.files, client_cert=client_cert, piece_port=piece_port)

    contexts = {"context": build()}

    def swap(ssl_object: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
        source.material()
        if source.generation != current["generation"]:
            try:
                fresh = build()
            except SecurityError as exc:
                log.warning("TLS server context not renewed: %s", exc)
                return
            fresh.sni_callback = swap
            contexts["context"] = fresh
            current["generation"] = source.generation
        ssl_object.context = contexts["context"]

    contexts["context"].sni_callback = swap
    return contexts["context"]


# gRPC --------------------------------------------------------------------------------------


def grpc_server_credentials(source: ReloadingFiles) -> grpc.ServerCredentials:
    """mTLS for a gRPC server: client certificates required and checked against the cluster
    CA; renewed material is used from the next handshake on."""
    served = {"generation": source.generation}

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        material = source.material()
        if source.generation == served["generation"]:
            return None
        served["generation"] = source.generation
        return _certificate_configuration(material)

    return grpc.dynamic_ssl_server_credentials(
        _certificate_configuration(source.material()), fetch, require_client_authentication=True
    )


def _certificate_configuration(material: NodeMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key_pem, material.cert_pem)], root_certificates=material.ca_pem
    )


def grpc_channel_credentials(material: NodeMaterial) -> grpc.ChannelCredentials:
    """mTLS for a gRPC client: trust only the cluster CA, present the node's certificate.
    Channels built with these keep them: rebuild when ``ReloadingFiles.generation`` moves."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_pem,
        private_key=material.key_pem,
        certificate_chain=material.cert_pem,
    )


def grpc_channel_options(server_name: str | None) -> list[tuple[str, str]]:
    """Channel options for TLS: ``server_name`` is the name checked in the server's
    certificate when it differs from the dialled host."""
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []


def secure_channel(
    address: str,
    material: NodeMaterial,
    *,
    server_name: str | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``address`` over mTLS (the daemon's scheduler link)."""
    all_options = [*(options or []), *grpc_channel_options(server_name)]
    return grpc.aio.secure_channel(address, grpc_channel_credentials(material), all_options)


# gRPC reads http_proxy / https_proxy / grpc_proxy from the environment; cluster traffic
# (the scheduler link) never goes through a forward proxy meant for origins (docs/hubs.md).
NO_PROXY_OPTIONS: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0)]


class ChannelMaker:
    """How a client opens its gRPC channels (the daemon's scheduler link): plain text when
    TLS is off, else mTLS with the node's *current* material. Channels keep the credentials
    they were opened with: reopen them when ``generation`` moves (a renewal landed)."""

    def __init__(self, source: ReloadingFiles | None, *, server_name: str | None = None) -> None:
        self._source = source
        self._server_name = server_name

    @classmethod
    def from_settings(cls, settings: TlsSettings, server_role: Role) -> ChannelMaker:
        """Channels to servers of ``server_role``: the server's certificate must carry that
        role's name (``roles.role_server_name``) unless ``settings.server_name`` says else."""
        if not settings.enabled:
            return cls(None)
        source = ReloadingFiles(node_files_from(settings))
        return cls(source, server_name=settings.server_name or role_server_name(server_role))

    @property
    def tls(self) -> bool:
        return self._source is not None

    @property
    def generation(self) -> int:
        if self._source is None:
            return 0
        self._source.material()  # polls the files
        return self._source.generation

    def open(self, address: str, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        options = [*NO_PROXY_OPTIONS, *(options or [])]
        if self._source is None:
            return grpc.aio.insecure_channel(address, options=options)
        material = self._source.material()
        return secure_channel(address, material, server_name=self._server_name, options=options)
