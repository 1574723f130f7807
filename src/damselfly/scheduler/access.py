"""Who may call which scheduler RPC: the role table of ``security/roles.py`` applied to gRPC.

With mTLS on, every call has a *caller* (node id and role from its client certificate, which
gRPC verified against the cluster CA during the handshake). The checks, in order:

1. the connection is TLS 1.3 and the certificate names a role;
2. the role may do the action (``register``, ``act_as_seed``: roles.py);
3. a host id belongs to the node that first announced it: another certificate cannot announce,
   register, report or leave for it (a host id whose host expired may be claimed anew);
4. origin digests: a seed may report them; a peer only for a task on which this scheduler made
   it the origin reader (``BACK_TO_SOURCE``). Origin-reader claims re-announced after a restart
   are kept only from seeds; a peer's are stripped (its pieces stay known, without digests).

Without TLS there is no caller and every check passes: plain-text mode trusts whoever connects.
Refusals raise ``AccessDeniedError`` (gRPC ``PERMISSION_DENIED``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import NoReturn

from damselfly.protocol.messages import HostInfo, HostType, PeerReport, TaskHolding
from damselfly.scheduler.state import SchedulerState
from damselfly.security.errors import AccessDeniedError, SecurityError
from damselfly.security.roles import Action, Caller, caller_of_pem, may

log = logging.getLogger(__name__)
TLS_VERSION = b"TLSv1.3"
# A daemon calls many times with the same certificate: parse each one once.
_caller_of_pem = functools.lru_cache(maxsize=4096)(caller_of_pem)


class Access:
    def __init__(self, state: SchedulerState, *, tls: bool) -> None:
        self._state = state
        self._tls = tls
        self._owners: dict[str, str] = {}  # host id -> node id of the certificate
        self.refusals = 0

    def caller(self, auth_context: Mapping[str, Sequence[bytes]]) -> Caller | None:
        """The authenticated caller; None in plain-text mode."""
        if not self._tls:
            return None
        version = auth_context.get("ssl_tls_version", [b""])
        if version and version[0] and version[0] != TLS_VERSION:
            self._refuse(f"TLS version {version[0].decode(errors='replace')}: TLS 1.3 required")
        pems = auth_context.get("x509_pem_cert")
        if not pems:
            self._refuse("no client certificate")
        try:
            return _caller_of_pem(pems[0])
        except SecurityError as exc:
            self._refuse(str(exc))

    def _refuse(self, reason: str) -> NoReturn:
        self.refusals += 1
        raise AccessDeniedError(reason)

    def _require(self, caller: Caller, action: Action) -> None:
        if not may(caller.role, action):
            self._refuse(f"a {caller.role} certificate may not {action.value.replace('_', ' ')}")

    # Checks, one per kind of RPC ---------------------------------------------------------

    def host_announced(self, caller: Caller | None, info: HostInfo) -> None:
        if caller is None:
            return
        self._require(caller, Action.REGISTER)
        if info.type is HostType.SEED:
            self._require(caller, Action.ACT_AS_SEED)
        self._claim(caller, info.host_id)

    def registered(self, caller: Caller | None) -> None:
        """Calls any node may make (asking for a task's digests)."""
        if caller is not None:
            self._require(caller, Action.REGISTER)

    def acts_for_host(self, caller: Caller | None, host_id: str) -> None:
        """Announce tasks, register, report, leave: for a host the caller owns."""
        if caller is None:
            return
        self._require(caller, Action.REGISTER)
        owner = self._owners.get(host_id)
        if owner is not None and owner != caller.node_id:
            self._refuse(f"host {host_id} belongs to another node")

    def watches_seed_jobs(self, caller: Caller | None, host_id: str) -> None:
        if caller is None:
            return
        self._require(caller, Action.ACT_AS_SEED)
        self.acts_for_host(caller, host_id)

    def reported(self, caller: Caller | None, report: PeerReport) -> None:
        self.acts_for_host(caller, report.host_id)
        if caller is None or not report.digests or may(caller.role, Action.REPORT_ORIGIN_DIGESTS):
            return
        task = self._state.resources.tasks.get(report.task_id)
        if task is None or not task.digests.is_reader(report.peer_id):
            self._refuse(f"a {caller.role} may report digests only as the task's origin reader")

    def holdings(self, caller: Caller | None, holdings: list[TaskHolding]) -> list[TaskHolding]:
        """Strip origin-reader claims a peer re-announced (only seeds restore digests)."""
        if caller is None or may(caller.role, Action.REPORT_ORIGIN_DIGESTS):
            return holdings
        claims = sum(holding.origin_reader for holding in holdings)
        if claims:
            log.info("ignored %d origin-reader claims from %s (role %s)", claims,
                     caller.node_id, caller.role)  # fmt: skip
        return [dataclasses.replace(h, origin_reader=False, digests=()) for h in holdings]

    def _claim(self, caller: Caller, host_id: str) -> None:
        owner = self._owners.get(host_id)
        known = host_id in self._state.resources.hosts
        if owner is not None and owner != caller.node_id and known:
            self._refuse(f"host {host_id} belongs to another node")
        self._owners[host_id] = caller.node_id
        if len(self._owners) > 2 * len(self._state.resources.hosts) + 1024:
            self._forget_gone_hosts()

    def _forget_gone_hosts(self) -> None:
        hosts = self._state.resources.hosts
        self._owners = {h: node for h, node in self._owners.items() if h in hosts}
