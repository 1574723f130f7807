"""Roles a certificate names, and what each role may do.

A node certificate carries exactly one role as the URI SAN ``damselfly://role/<role>``
(``certs.py``). The table below is the whole policy; services ask ``may(role, action)``.

==========================  ============================  ================================
action                      roles allowed                 where it is checked
==========================  ============================  ================================
``register``                seed, peer                    scheduler: AnnounceHost (normal),
                                                          AnnounceTasks, RegisterPeer,
                                                          ReportPeer, GetPieceDigests,
                                                          LeaveHost
``act_as_seed``             seed                          scheduler: AnnounceHost as a seed
                                                          host, WatchSeedJobs
``report_origin_digests``   seed (peer: see below)        scheduler: digests in ReportPeer,
                                                          origin-reader claims in
                                                          AnnounceTasks
``fetch_pieces``            seed, peer                    piece port (next round)
``admin``                   manager                       manager API (later)
==========================  ============================  ================================

Clients check a server's role through its name: every certificate also carries the DNS name
``<role>.role.damselfly.internal``, which only the CA adds (``role_server_name``).

A *peer* reports origin digests legitimately in one case: the scheduler itself told it to read
the origin (``BACK_TO_SOURCE``), so it is the task's origin reader. The scheduler allows a
peer's digests only for a peer it chose as reader (``ReaderCheck`` in the scheduler service);
a peer certificate can never *become* a reader by claiming to be a seed or by re-announcing
itself as a reader after a restart. ``scheduler`` and ``client`` certificates exist for
servers and command-line tools (dfctl): they may call, but not register a host.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damselfly.security.errors import SecurityError

if TYPE_CHECKING:  # cryptography is imported where a certificate is read: only with TLS
    from cryptography import x509

ROLE_URI_PREFIX = "damselfly://role/"
ROLE_DNS_SUFFIX = ".role.damselfly.internal"


class Role(enum.StrEnum):
    SCHEDULER = "scheduler"
    SEED = "seed"
    PEER = "peer"
    MANAGER = "manager"
    CLIENT = "client"


class Action(enum.StrEnum):
    REGISTER = "register"
    ACT_AS_SEED = "act_as_seed"
    REPORT_ORIGIN_DIGESTS = "report_origin_digests"
    FETCH_PIECES = "fetch_pieces"
    ADMIN = "admin"


PERMISSIONS: Mapping[Action, frozenset[Role]] = {
    Action.REGISTER: frozenset({Role.SEED, Role.PEER}),
    Action.ACT_AS_SEED: frozenset({Role.SEED}),
    Action.REPORT_ORIGIN_DIGESTS: frozenset({Role.SEED}),
    Action.FETCH_PIECES: frozenset({Role.SEED, Role.PEER}),
    Action.ADMIN: frozenset({Role.MANAGER}),
}


def may(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]


def role_server_name(role: Role) -> str:
    """The DNS name every certificate of ``role`` carries (``seed.role.damselfly.internal``).

    Only the CA adds these names (requests for them are refused), so a client that checks the
    server's name against ``role_server_name(Role.SCHEDULER)`` (gRPC's target name override)
    checks the server's *role*: a peer certificate listing the scheduler's IP address cannot
    pass for the scheduler."""
    return role.value + ROLE_DNS_SUFFIX


def is_role_name(name: str) -> bool:
    return name.lower().rstrip(".").endswith(ROLE_DNS_SUFFIX)


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of an authenticated connection."""

    node_id: str
    role: Role


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise SecurityError(f"unknown role {value!r}: expected one of {choices}") from None


def role_of(certificate: x509.Certificate) -> Role:
    """The one role a certificate names; anything else (none, two, unknown) is refused."""
    from cryptography import x509

    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SecurityError("the certificate names no damselfly role") from None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    roles = [uri.removeprefix(ROLE_URI_PREFIX) for uri in uris if uri.startswith(ROLE_URI_PREFIX)]
    if len(roles) != 1:
        raise SecurityError(f"the certificate names {len(roles)} damselfly roles, expected 1")
    return parse_role(roles[0])


def node_id_of(certificate: x509.Certificate) -> str:
    from cryptography.x509.oid import NameOID

    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise SecurityError("the certificate does not carry exactly one common name")
    return str(names[0].value)


def caller_of_certificate(certificate: x509.Certificate) -> Caller:
    return Caller(node_id_of(certificate), role_of(certificate))


def caller_of_pem(pem: bytes) -> Caller:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SecurityError("the peer certificate is not PEM") from exc
    return caller_of_certificate(certificate)


def caller_of_der(der: bytes) -> Caller:
    from cryptography import x509

    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise SecurityError("the peer certificate is not DER") from exc
    return caller_of_certificate(certificate)


def caller_of_auth_context(auth_context: Mapping[str, Sequence[bytes]]) -> Caller | None:
    """The caller of a gRPC call, from ``context.auth_context()``; None on a plain-text
    channel. gRPC has already verified the chain against the cluster CA when it got here."""
    pems = auth_context.get("x509_pem_cert")
    if not pems:
        return None
    return caller_of_pem(pems[0])
