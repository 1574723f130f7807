"""Node certificates: who a node is (CN = node id), where it is (DNS/IP SANs) and its role.

The role is carried as a URI subject alternative name, ``damselfly://role/<role>`` (exactly
one; ``roles.role_of`` reads it back), and as the DNS name ``<role>.role.damselfly.internal``
that clients check to know they reached a server of the role they meant
(``roles.role_server_name``). A URI SAN rather than an OU because SANs are what TLS stacks
expose reliably (gRPC's ``auth_context`` lists them) and a URI cannot be confused with a host
name. Node certificates are short-lived (24 h by default) and carry both the serverAuth and
clientAuth usages: a node both serves (scheduler, piece port) and calls others.

Certificates are issued two ways, both here: ``issue`` (the CA holder makes the key too:
``damselfly ca issue``, tests, the demo) and ``read_request`` + ``sign`` (the node made its
key and sent a CSR: enrollment and renewal). Either way the role and validity come from the CA
side, never from the request; the CSR only proposes the node id and SANs, and may not ask for
a role's name.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from damselfly.core.errors import ProtocolError
from damselfly.protocol.messages import check_host_id
from damselfly.security.ca import (
    CLOCK_SKEW,
    ClusterCA,
    key_to_pem,
    new_private_key,
    utc_now,
)
from damselfly.security.errors import EnrollmentError, SecurityError
from damselfly.security.files import NodeMaterial
from damselfly.security.roles import (
    ROLE_DNS_SUFFIX,
    ROLE_URI_PREFIX,
    Role,
    is_role_name,
    node_id_of,
    role_server_name,
)

DEFAULT_VALIDITY = datetime.timedelta(hours=24)
MAX_VALIDITY = datetime.timedelta(days=366)
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class NodeIdentity:
    """What a node certificate says: node id (CN), role, and the names it serves under."""

    node_id: str
    role: Role | None  # None: a server-only certificate (the enrollment service) that may do
    # nothing in the cluster
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IpAddress, ...] = field(default=())

    def __post_init__(self) -> None:
        try:
            check_host_id(self.node_id, "node id")
        except ProtocolError as exc:
            raise SecurityError(str(exc)) from exc
        reserved = [name for name in self.dns_names if is_role_name(name)]
        if reserved:
            raise SecurityError(f"{reserved[0]}: names under {ROLE_DNS_SUFFIX} are the CA's")


def parse_ips(values: Sequence[str]) -> tuple[IpAddress, ...]:
    try:
        return tuple(ipaddress.ip_address(value) for value in values)
    except ValueError as exc:
        raise SecurityError(str(exc)) from exc


def issue(
    ca: ClusterCA,
    identity: NodeIdentity,
    *,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    now: datetime.datetime | None = None,
) -> NodeMaterial:
    """A new key and a certificate for it, signed by ``ca``: a node's whole material."""
    key = new_private_key()
    certificate = sign(ca, key.public_key(), identity, validity=validity, now=now)
    return NodeMaterial(
        ca_pem=ca.cert_pem,
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key_to_pem(key),
    )


def sign(
    ca: ClusterCA,
    public_key: ec.EllipticCurvePublicKey,
    identity: NodeIdentity,
    *,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    if not datetime.timedelta(minutes=1) <= validity <= MAX_VALIDITY:
        raise SecurityError(f"certificate validity {validity}: expected 1 minute to 366 days")
    now = now or utc_now()
    not_after = min(now + validity, ca.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id)]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(_BOTH_WAYS, critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(identity)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )


_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip
_BOTH_WAYS = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


def _alt_names(identity: NodeIdentity) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    if identity.role is not None:
        names.append(x509.UniformResourceIdentifier(ROLE_URI_PREFIX + identity.role.value))
        names.append(x509.DNSName(role_server_name(identity.role)))
    names += [x509.DNSName(name) for name in identity.dns_names]
    names += [x509.IPAddress(ip) for ip in identity.ip_addresses]
    return names


# Certificate signing requests ------------------------------------------------------------


def make_request(
    key: ec.EllipticCurvePrivateKey,
    node_id: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[IpAddress] = (),
) -> bytes:
    """A PEM CSR proposing ``node_id`` and the SANs; the CA adds the role."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ip) for ip in ip_addresses]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class SigningRequest:
    """A CSR whose signature was checked: the requester holds the key."""

    public_key: ec.EllipticCurvePublicKey
    node_id: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IpAddress, ...]


def read_request(pem: bytes) -> SigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise EnrollmentError("not a PEM certificate signing request") from exc
    if not csr.is_signature_valid:
        raise EnrollmentError("the signing request's signature does not verify")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise EnrollmentError("the signing request's key must be ECDSA P-256")
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(common_names) != 1:
        raise EnrollmentError("the signing request must carry exactly one common name")
    dns, ips = _requested_names(csr)
    reserved = [name for name in dns if is_role_name(name)]
    if reserved:
        raise EnrollmentError(f"{reserved[0]}: names under {ROLE_DNS_SUFFIX} are the CA's")
    return SigningRequest(public, str(common_names[0].value), dns, ips)


def _requested_names(
    csr: x509.CertificateSigningRequest,
) -> tuple[tuple[str, ...], tuple[IpAddress, ...]]:
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(sans.get_values_for_type(x509.DNSName))
    ips = _addresses(sans)
    return dns, ips


def _addresses(sans: x509.SubjectAlternativeName) -> tuple[IpAddress, ...]:
    values = sans.get_values_for_type(x509.IPAddress)  # networks only appear in name constraints
    return tuple(v for v in values if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address))


# Reading certificates back ----------------------------------------------------------------


def identity_of(certificate: x509.Certificate, role: Role) -> NodeIdentity:
    """The identity a certificate states (to renew it with the same names)."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(n for n in sans.get_values_for_type(x509.DNSName) if not is_role_name(n))
        ips = _addresses(sans)
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return NodeIdentity(node_id_of(certificate), role, dns, ips)
