"""The enrollment service (``damselfly ca serve``): a small HTTPS endpoint next to the CA key
that turns a join token and a CSR into a node certificate, and renews certificates.

Routes (JSON bodies of at most 64 KiB):

- ``GET /v1/ca``: the CA certificate (public; a joining node checks it against the fingerprint
  it was given out of band before it sends anything secret: ``enrollment_client.py``);
- ``POST /v1/enroll`` ``{"token", "csr", "role"?}`` -> ``{"certificate", "ca"}``: the token is
  redeemed (once; ``tokens.py``), the role comes from the token, the node id and names from the
  CSR (a token bound to a node id refuses any other);
- ``POST /v1/renew`` ``{"csr"}`` over mTLS: the caller's current certificate (verified by the
  TLS handshake against the CA, so it must not have expired) is re-issued for the CSR's new key
  with the same node id, names and role. No token: the certificate is the proof.

The service's own certificate is issued at start for the names it is reached by (``--san``;
the listen address when it is an IP), lives 7 days, is re-issued daily, and carries no role:
it can do nothing in the cluster.
Binds 127.0.0.1 by default. Tokens and keys are never logged.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from damselfly.config.base import split_host_port
from damselfly.security.ca import ClusterCA, cluster_secret
from damselfly.security.certs import (
    DEFAULT_VALIDITY,
    NodeIdentity,
    identity_of,
    issue,
    read_request,
    sign,
)
from damselfly.security.errors import EnrollmentError, SecurityError
from damselfly.security.files import NodeFiles, write_material
from damselfly.security.roles import parse_role, role_of
from damselfly.security.tls import ReloadingFiles, reloading_server_context
from damselfly.security.tokens import denied_nodes, redeem_token

log = logging.getLogger(__name__)
CA_PATH, ENROLL_PATH, RENEW_PATH = "/v1/ca", "/v1/enroll", "/v1/renew"
MAX_BODY_LENGTH = 64 * 1024
SERVICE_NAME = "enrollment"
SERVICE_DIR = "enrollment-service"
SERVICE_VALIDITY = datetime.timedelta(days=7)
SERVICE_REFRESH_INTERVAL = 86400.0  # a day: six days of margin


class EnrollmentService:
    """Certificate issuance by the rules above, over a loaded CA."""

    def __init__(self, ca: ClusterCA, *, validity: datetime.timedelta = DEFAULT_VALIDITY) -> None:
        self.ca = ca
        self.validity = validity

    def enroll(self, token: str, csr_pem: bytes, role: str | None = None) -> x509.Certificate:
        request = read_request(csr_pem)  # a malformed CSR does not use the token up
        self._check_not_denied(request.node_id)
        grant = redeem_token(self.ca.directory, token)
        if role is not None and parse_role(role) is not grant.role:
            raise EnrollmentError(f"the join token is for role {grant.role}, not {role}")
        if grant.node_id is not None and grant.node_id != request.node_id:
            raise EnrollmentError(f"the join token is for node {grant.node_id}")
        identity = NodeIdentity(
            request.node_id, grant.role, request.dns_names, request.ip_addresses
        )
        certificate = sign(self.ca, request.public_key, identity, validity=self.validity)
        log.info("enrolled node %s as %s (serial %x)", identity.node_id, grant.role,
                 certificate.serial_number)  # fmt: skip
        return certificate

    def renew(self, current_der: bytes, csr_pem: bytes) -> x509.Certificate:
        current = x509.load_der_x509_certificate(current_der)
        identity = identity_of(current, role_of(current))
        self._check_not_denied(identity.node_id)
        request = read_request(csr_pem)
        if request.node_id != identity.node_id:
            raise EnrollmentError(f"a renewal keeps the node id {identity.node_id}")
        certificate = sign(self.ca, request.public_key, identity, validity=self.validity)
        log.info("renewed node %s (%s), serial %x", identity.node_id, identity.role,
                 certificate.serial_number)  # fmt: skip
        return certificate

    def _check_not_denied(self, node_id: str) -> None:
        if node_id in denied_nodes(self.ca.directory):
            raise EnrollmentError(f"node {node_id} is denied by the CA operator")

    # HTTP ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_LENGTH)
        app.router.add_get(CA_PATH, self._ca)
        app.router.add_post(ENROLL_PATH, self._enroll)
        app.router.add_post(RENEW_PATH, self._renew)
        return app

    async def _ca(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.ca.cert_pem, content_type="application/x-pem-file")

    async def _enroll(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        role = body.get("role")
        return self._issued(
            lambda: self.enroll(
                _text(body, "token"),
                _text(body, "csr").encode(),
                role if isinstance(role, str) else None,
            )
        )

    async def _renew(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der:
            return _error(EnrollmentError("renewal needs the current client certificate"), 401)
        return self._issued(lambda: self.renew(der, _text(body, "csr").encode()))

    def _issued(self, make: Callable[[], x509.Certificate]) -> web.Response:
        try:
            certificate = make()
        except SecurityError as exc:
            log.info("refused: %s", exc)
            return _error(exc, exc.http_status)
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        answer = {"certificate": pem, "ca": self.ca.cert_pem.decode()}
        secret = cluster_secret(self.ca)  # only to a node just admitted, over verified TLS
        if secret is not None:
            answer["cluster_secret"] = secret.decode("ascii", errors="replace")
        return web.json_response(answer)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()  # a body over MAX_BODY_LENGTH: 413 from aiohttp
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "expected a JSON object"}')
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"missing field {name!r}"}))
    return value


def _error(error: SecurityError, status: int) -> web.Response:
    return web.json_response({"error": str(error)}, status=status)


# Serving -------------------------------------------------------------------------------------


def service_identity(listen: str, names: Sequence[str]) -> NodeIdentity:
    """The service's own identity: no role; the listen host and ``names`` as SANs."""
    host, _ = split_host_port(listen)
    dns, ips = [], []
    for name in [host, *names]:
        try:
            ips.append(ipaddress.ip_address(name))
        except ValueError:
            dns.append(name)
    return NodeIdentity(SERVICE_NAME, None, tuple(dns), tuple(ips))


def issue_service_certificate(ca: ClusterCA, identity: NodeIdentity) -> NodeFiles:
    material = issue(ca, identity, validity=SERVICE_VALIDITY)
    return write_material(ca.directory / SERVICE_DIR, material)


async def _refresh_service_certificate(
    ca: ClusterCA, identity: NodeIdentity, interval: float
) -> None:
    """Re-issue the service's certificate long before it expires; new handshakes use it."""
    while True:
        await asyncio.sleep(interval)
        issue_service_certificate(ca, identity)
        log.info("enrollment service certificate renewed")


async def serve_enrollment(
    service: EnrollmentService,
    listen: str,
    names: Sequence[str],
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
    refresh_interval: float = SERVICE_REFRESH_INTERVAL,
) -> None:
    """Serve until ``stop``; ``on_ready`` gets ``https://host:port``. The client certificate
    is optional (joining nodes have none) and verified against the CA when sent."""
    identity = service_identity(listen, names)
    files = issue_service_certificate(service.ca, identity)
    context = reloading_server_context(ReloadingFiles(files), client_cert=False)
    host, port = split_host_port(listen)
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            raise SecurityError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        if on_ready is not None:
            on_ready(f"https://{shown}:{bound}")
        async with asyncio.TaskGroup() as tasks:
            refresher = tasks.create_task(
                _refresh_service_certificate(service.ca, identity, refresh_interval)
            )
            await stop.wait()
            refresher.cancel()
    finally:
        await runner.cleanup()
