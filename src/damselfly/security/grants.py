"""Grants: the scheduler's signed permission for one host to fetch one private task's pieces.

A task downloaded with credentials (a token, an ``Authorization`` header, a signed URL: the
daemon marks it ``needs_credentials``) is *private*. A parent serves its pieces only to a
request carrying a grant (header ``X-Damselfly-Grant``) that

- was signed by a certificate of this cluster naming the ``scheduler`` role (the certificate
  travels inside the grant; its chain must lead to the cluster CA and it must be valid now);
- names this task and the requesting host, which must be the common name of the client
  certificate the request came in on (so a grant is useless to anyone else);
- has not expired (``GRANT_TTL``, one hour).

The scheduler issues one in the ``RegisterPeer`` answer, over mTLS only, and only when the
registering daemon attests that the origin accepted *its own* credentials for the file: a
daemon registers a private task only after its own ``stat`` of the origin with the request's
credentials succeeded (``needs_credentials`` in the registration is that attestation). A node
without credentials for the file fails at that ``stat`` and never asks.

Format: ``<payload>.<signature>.<certificate>``, each base64url without padding; the payload
is compact JSON ``{"t": task id, "h": host id, "e": expiry (unix seconds)}``, signed with ECDSA
P-256 / SHA-256 by the scheduler's key; the certificate is DER. Grants carry no secret of the
origin: they may be logged (they are not), and a leaked one works only for its host.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damselfly.security.errors import AccessDeniedError, SecurityError
from damselfly.security.files import NodeMaterial
from damselfly.security.roles import Role, role_of

if TYPE_CHECKING:  # cryptography is imported where a grant is signed or checked: only with TLS
    from cryptography import x509

GRANT_HEADER = "X-Damselfly-Grant"
GRANT_TTL = 3600.0
_VERIFIED_CACHE = 1024
Clock = Callable[[], float]


@dataclass(frozen=True)
class Grant:
    task_id: str
    host_id: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_grant(
    material: NodeMaterial,
    task_id: str,
    host_id: str,
    *,
    ttl: float = GRANT_TTL,
    clock: Clock = time.time,
) -> str:
    """A grant for ``host_id`` to fetch ``task_id``, signed with the scheduler's key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(material.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SecurityError("grants are signed with an EC key")
    body = {"t": task_id, "h": host_id, "e": int(clock() + ttl)}
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    der = x509.load_pem_x509_certificate(material.cert_pem).public_bytes(serialization.Encoding.DER)
    return ".".join((_b64(payload), _b64(signature), _b64(der)))


class GrantVerifier:
    """Checks grants against the cluster CA; verified grants are remembered (bounded)."""

    def __init__(self, ca_pem: Callable[[], bytes], *, clock: Clock = time.time) -> None:
        self._ca_pem = ca_pem
        self._clock = clock
        self._verified: OrderedDict[str, Grant] = OrderedDict()

    def check(self, token: str | None, task_id: str, host_id: str) -> Grant:
        """The grant, if it lets ``host_id`` fetch ``task_id`` now; else AccessDeniedError."""
        if not token:
            raise AccessDeniedError(f"task {task_id[:12]} is private: a grant is needed")
        grant = self._verified.get(token) or self._verify(token)
        if grant.task_id != task_id or grant.host_id != host_id:
            raise AccessDeniedError("the grant is for another task or host")
        if grant.expires <= self._clock():
            raise AccessDeniedError("the grant expired")
        return grant

    def _verify(self, token: str) -> Grant:
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            payload_text, signature_text, cert_text = token.split(".")
            payload, signature = _unb64(payload_text), _unb64(signature_text)
            certificate = x509.load_der_x509_certificate(_unb64(cert_text))
        except (ValueError, binascii.Error) as exc:
            raise AccessDeniedError("the grant is malformed") from exc
        self._check_signer(certificate)
        public_key = certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise AccessDeniedError("the grant's signer has no EC key")
        try:
            public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AccessDeniedError("the grant's signature does not match") from None
        grant = _grant_of(payload)
        self._remember(token, grant)
        return grant

    def _check_signer(self, certificate: x509.Certificate) -> None:
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature

        ca = x509.load_pem_x509_certificate(self._ca_pem())
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise AccessDeniedError("the grant was not signed by this cluster") from None
        now = self._clock()
        valid_from = certificate.not_valid_before_utc.timestamp()
        if not valid_from <= now < certificate.not_valid_after_utc.timestamp():
            raise AccessDeniedError("the grant's signer certificate is not valid now")
        try:
            role = role_of(certificate)
        except SecurityError as exc:
            raise AccessDeniedError(str(exc)) from exc
        if role is not Role.SCHEDULER:
            raise AccessDeniedError(f"a {role} may not grant access")

    def _remember(self, token: str, grant: Grant) -> None:
        self._verified[token] = grant
        while len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)


def _grant_of(payload: bytes) -> Grant:
    try:
        body = json.loads(payload)
        return Grant(str(body["t"]), str(body["h"]), int(body["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AccessDeniedError("the grant's payload is malformed") from exc
