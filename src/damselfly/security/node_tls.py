"""One node's TLS, as its services use it: who it is, the contexts it serves and dials with,
and whether it renews its own certificate.

``NodeTls.from_settings(settings.tls, expect=...)`` reads the node's material once, checks the
role its certificate names, and keeps the files under watch (``tls.ReloadingFiles``): the
piece port's server context (``server_context``) swaps to renewed material at the next
handshake, the piece client's context (``client_context``) is rebuilt when the material's
generation moves, and ``channels`` (a ``ChannelMaker``) reopens gRPC channels after renewal.

The node's identity is its certificate's common name (``node_id``): a daemon with TLS uses it
as its host id, because the scheduler binds a host id to the certificate that first announced
it (``scheduler/access.py``) and a grant for private content is bound to it.

``cluster_key()`` is the cluster's shared secret (``cluster.secret`` next to the material,
mode 0600; written by ``ca init``, handed out by enrollment and ``ca issue``): private tasks
get ids only its holders can compute (``download/credentials.py``). None when absent.

``renewal_loop()`` returns the loop that keeps the certificate fresh when the material came
from ``damselfly enroll`` (its directory holds ``enrollment.json``); for a mounted Kubernetes
Secret or files issued by hand the owner of the files renews them, and it returns None.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection
from pathlib import Path

from damselfly.config.security import TlsSettings
from damselfly.security.enrollment_client import RECORD_NAME, renew
from damselfly.security.errors import SecurityError
from damselfly.security.files import CLUSTER_SECRET_NAME, node_files_from, read_secret
from damselfly.security.renewal import RenewalLoop
from damselfly.security.roles import Caller, Role, caller_of_pem, role_server_name
from damselfly.security.tls import (
    ChannelMaker,
    ReloadingFiles,
    client_context,
    reloading_server_context,
)


class NodeTls:
    """The TLS side of one running node (a daemon or the scheduler)."""

    def __init__(self, source: ReloadingFiles, settings: TlsSettings) -> None:
        self.source = source
        self.settings = settings
        self.me: Caller = caller_of_pem(source.material().cert_pem)
        self._client: tuple[int, ssl.SSLContext] | None = None

    @classmethod
    def from_settings(cls, settings: TlsSettings, *, expect: Collection[Role]) -> NodeTls:
        """The node's TLS; a certificate naming a role outside ``expect`` is refused."""
        node = cls(ReloadingFiles(node_files_from(settings)), settings)
        if node.me.role not in expect:
            wanted = " or ".join(sorted(role.value for role in expect))
            raise SecurityError(
                f"{node.source.files.cert_file}: a {node.me.role} certificate, expected {wanted}"
            )
        return node

    @property
    def node_id(self) -> str:
        return self.me.node_id

    @property
    def role(self) -> Role:
        return self.me.role

    def server_context(self) -> ssl.SSLContext:
        """The piece port's: TLS 1.2 ECDHE-ECDSA-AES128-GCM (``tls.py``), client certificate
        of this cluster required; renewals taken at the next handshake."""
        return reloading_server_context(self.source, piece_port=True)

    def client_context(self) -> ssl.SSLContext:
        """The piece client's (the piece port's profile, ``tls.py``) to another node of the
        cluster, presenting this node's certificate.

        The server's chain must lead to the cluster CA; its host name is not checked (a
        parent is dialled by the IP address the scheduler gave, and any seed or peer may be
        a parent). The parent's own check of *our* role is what keeps outsiders out."""
        self.source.material()  # polls the files
        generation = self.source.generation
        if self._client is None or self._client[0] != generation:
            context = client_context(self.source.files, check_hostname=False, piece_port=True)
            self._client = (generation, context)
        return self._client[1]

    def channels(self, server_role: Role = Role.SCHEDULER) -> ChannelMaker:
        """gRPC channels to servers of ``server_role`` with this node's current material."""
        name = self.settings.server_name or role_server_name(server_role)
        return ChannelMaker(self.source, server_name=name)

    def cluster_key(self) -> bytes | None:
        path = self.source.files.cert_file.parent / CLUSTER_SECRET_NAME
        if not path.exists():
            return None
        return read_secret(path).strip() or None

    def renewal_loop(self) -> RenewalLoop | None:
        """The loop renewing an enrolled node's certificate; None for other material."""
        directory = self.enrolled_dir()
        return None if directory is None else RenewalLoop(directory, renew)

    def enrolled_dir(self) -> Path | None:
        directory = self.settings.dir
        if directory is None or not (directory / RECORD_NAME).is_file():
            return None
        if self.source.files.cert_file.parent != directory:
            return None  # files named one by one: not what enroll wrote
        return directory
