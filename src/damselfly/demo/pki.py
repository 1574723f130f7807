"""A throw-away cluster PKI for the demo and for clusters on one machine.

``LocalPki(root)`` makes a cluster CA in ``root/ca`` and, on demand, a node's material
(``tls.crt``, ``tls.key``, ``ca.crt``, and the cluster's ``cluster.secret``) in
``root/<node id>``: what ``damselfly ca init`` and ``damselfly ca issue`` do, without the
commands. Each process of the demo gets its own
directory through ``DAMSELFLY_TLS_DIR``, so every link of the demo runs over mTLS. The CA key
stays in ``root``, which the demo deletes with everything else.
"""

from __future__ import annotations

from pathlib import Path

from damselfly.config.security import CLUSTER_TLS_DIR_ENV
from damselfly.security.ca import ClusterCA, hand_out_cluster_secret, init_ca
from damselfly.security.certs import NodeIdentity, issue, parse_ips
from damselfly.security.files import write_material
from damselfly.security.roles import Role

__all__ = ["CLUSTER_TLS_DIR_ENV", "LocalPki", "Role"]


class LocalPki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca: ClusterCA = init_ca(root / "ca")

    def node_dir(self, node_id: str, role: Role, ips: tuple[str, ...] = ("127.0.0.1",)) -> Path:
        """The material of ``node_id`` (issued on first use) for a node serving on ``ips``
        (loopback by default)."""
        directory = self.root / node_id
        if not (directory / "tls.crt").exists():
            identity = NodeIdentity(node_id, role, ("localhost",), parse_ips(list(ips)))
            write_material(directory, issue(self.ca, identity))
            hand_out_cluster_secret(self.ca, directory)
        return directory

    def env_for(self, node_id: str, role: Role) -> dict[str, str]:
        return {CLUSTER_TLS_DIR_ENV: str(self.node_dir(node_id, role))}
