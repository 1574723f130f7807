"""A throw-away cluster PKI for tests: one CA in a temporary directory, node material on demand."""

from __future__ import annotations

import datetime
from pathlib import Path

from damselfly.config.security import TlsSettings
from damselfly.security.ca import ClusterCA, init_ca
from damselfly.security.certs import DEFAULT_VALIDITY, NodeIdentity, issue, parse_ips
from damselfly.security.files import NodeFiles, write_material
from damselfly.security.node_tls import NodeTls
from damselfly.security.roles import Role


class TestPki:
    """``pki.node("peer-1", Role.PEER)`` -> the files of a freshly issued node in ``root``."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca: ClusterCA = init_ca(root / "ca")

    def node(
        self,
        node_id: str,
        role: Role,
        *,
        ips: tuple[str, ...] = ("127.0.0.1",),
        dns: tuple[str, ...] = ("localhost",),
        validity: datetime.timedelta = DEFAULT_VALIDITY,
        now: datetime.datetime | None = None,
    ) -> NodeFiles:
        identity = NodeIdentity(node_id, role, dns, parse_ips(ips))
        material = issue(self.ca, identity, validity=validity, now=now)
        return write_material(self.root / node_id, material)

    def node_tls(self, node_id: str, role: Role) -> NodeTls:
        """A node's TLS from a certificate issued for ``role`` (any role accepted)."""
        files = self.node(node_id, role)
        settings = TlsSettings(enabled=True, dir=files.cert_file.parent)
        return NodeTls.from_settings(settings, expect=set(Role))
