"""How much one scheduler holds, and how fast one client may make it hold more.

Issue 11: one client announced 20,000 fake hosts and tasks and the scheduler took them all.
``Admission`` is asked before any call that would add a host, a task or a peer to the state:

- **caps** (``AdmissionLimits``): ``max_hosts``, ``max_tasks``, ``max_peers`` in the whole
  scheduler; with mTLS also ``max_hosts_per_client`` (a daemon announces one host: a
  certificate that announces many is a script) and, always, ``max_peers_per_host``;
- **rate**: new hosts per second per client (``host_registrations_per_second``, a burst of
  ``host_registration_burst``). The client is the certificate's node id with mTLS, else the
  caller's IP address (``context.peer()``).

What is already known passes without being counted again (re-announcing a host, registering
a peer that exists): the caps bound new entries, not traffic. A refusal is
``CapacityError`` (gRPC ``RESOURCE_EXHAUSTED``): the daemon treats it like an unavailable
scheduler and tries the next one. Refusals are counted (``refused``) and logged at most once
per second. The per-client tables only hold clients that own hosts or were seen recently
(``_forget_idle``), so they are bounded by the caps too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from damselfly.core.errors import SchedulerError
from damselfly.protocol.messages import peer_id_of
from damselfly.scheduler.resources import Resources

log = logging.getLogger(__name__)
Clock = Callable[[], float]
LOG_INTERVAL = 1.0


class CapacityError(SchedulerError):
    """The scheduler is at a configured cap, or the client registers too fast."""


@dataclass(frozen=True)
class AdmissionLimits:
    max_hosts: int = 10_000
    max_tasks: int = 100_000
    max_peers: int = 1_000_000
    max_hosts_per_client: int = 4  # with mTLS only: plain-text clients are IP addresses
    max_peers_per_host: int = 20_000
    host_registrations_per_second: float = 20.0
    host_registration_burst: int = 200


class _Bucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.level, self.updated = float(burst), now

    def try_take(self, now: float) -> bool:
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


class Admission:
    def __init__(
        self,
        limits: AdmissionLimits,
        resources: Resources,
        *,
        per_certificate: bool,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limits = limits
        self._resources = resources
        self._per_certificate = per_certificate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._hosts_of: dict[str, set[str]] = {}  # client -> host ids it announced
        self.refused = 0
        self._logged_at = float("-inf")

    def host(self, client: str, host_id: str) -> None:
        """Before announcing ``host_id`` for ``client``."""
        if host_id in self._resources.hosts:
            return
        if len(self._resources.hosts) >= self.limits.max_hosts:
            self._refuse(f"at its cap of {self.limits.max_hosts} hosts")
        owned = self._owned(client)
        if self._per_certificate and len(owned) >= self.limits.max_hosts_per_client:
            self._refuse(f"this certificate announced {len(owned)} hosts already")
        if not self._bucket(client).try_take(self._clock()):
            self._refuse("new hosts from this client come too fast")
        owned.add(host_id)

    def tasks(self, host_id: str, task_ids: Collection[str]) -> None:
        """Before ``host_id`` registers for (or announces) ``task_ids``."""
        resources = self._resources
        new_tasks = sum(task_id not in resources.tasks for task_id in task_ids)
        if new_tasks and len(resources.tasks) + new_tasks > self.limits.max_tasks:
            self._refuse(f"at its cap of {self.limits.max_tasks} tasks")
        new_peers = sum(peer_id_of(host_id, t) not in resources.peers for t in task_ids)
        if not new_peers:
            return
        if len(resources.peers) + new_peers > self.limits.max_peers:
            self._refuse(f"at its cap of {self.limits.max_peers} peers")
        host = resources.hosts.get(host_id)
        held = len(host.peer_ids) if host is not None else 0
        if held + new_peers > self.limits.max_peers_per_host:
            self._refuse(f"host {host_id} is at its cap of {self.limits.max_peers_per_host} tasks")

    def fitting(self, host_id: str, task_ids: list[str]) -> list[str]:
        """Of the tasks a host re-announces, those that fit under the caps (known ones always
        do): an announcement is trimmed, never refused, so a host keeps its scheduler."""
        kept: list[str] = []
        for task_id in task_ids:
            try:
                self.tasks(host_id, [*kept, task_id])
            except CapacityError:
                continue
            kept.append(task_id)
        return kept

    # -- bookkeeping -----------------------------------------------------------------------

    def _owned(self, client: str) -> set[str]:
        owned = self._hosts_of.setdefault(client, set())
        owned.intersection_update(self._resources.hosts)  # hosts that expired or left
        return owned

    def _bucket(self, client: str) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) > 4 * self.limits.max_hosts:
                self._forget_idle()
            limits = self.limits
            rate, burst = limits.host_registrations_per_second, limits.host_registration_burst
            bucket = self._buckets[client] = _Bucket(rate, burst, self._clock())
        return bucket

    def _forget_idle(self) -> None:
        """Drop clients whose bucket is full again and who own no host."""
        now = self._clock()
        for client, bucket in list(self._buckets.items()):
            bucket.try_take(now)
            bucket.level += 1  # undo the probe
            if bucket.level >= bucket.burst and not self._owned(client):
                del self._buckets[client]
                self._hosts_of.pop(client, None)

    def _refuse(self, reason: str) -> None:
        self.refused += 1
        now = self._clock()
        if now - self._logged_at >= LOG_INTERVAL:
            self._logged_at = now
            log.warning("refused a registration (%d so far): scheduler %s", self.refused, reason)
        raise CapacityError(f"scheduler {reason}")


def client_of(node_id: str | None, grpc_peer: str) -> str:
    """The client a call comes from: its certificate's node id, else its IP address
    (``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``)."""
    if node_id is not None:
        return "cert:" + node_id
    kind, _, rest = grpc_peer.partition(":")
    if kind == "ipv6":
        return "ip:" + rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return "ip:" + rest.rsplit(":", 1)[0]
    return "peer:" + grpc_peer[:64]
