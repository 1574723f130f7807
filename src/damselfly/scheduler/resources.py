"""The scheduler's picture of the mesh: hosts, tasks and peers, in memory, no I/O.

- A **host** is one daemon (``host_id``), known from its last ``AnnounceHost``. A host not
  announced for ``host_ttl`` seconds (``hosts_silent_for``) is dropped with its peers.
- A **task** is one file cut into pieces (``task_id``). It exists while at least one peer of
  it exists, and keeps the piece digests of its origin readers (``scheduler/digests.py``).
- A **peer** is one host's copy of one task (``peer_id = <host_id>/<task_id>``): the pieces
  it holds (a bitmap), whether it is still downloading, the parents it was last given.
  A peer whose download failed is dropped.

State changes only through the event-named methods below (``host_announced``,
``peer_registered``, ``pieces_gained``, ...); decisions (which parents, which seed) are made
elsewhere (``scheduler/state.py``) from what is recorded here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from damselfly.core.errors import ProtocolError, SchedulerError
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import HostInfo, HostType, TaskHolding, TaskMeta, peer_id_of
from damselfly.scheduler.digests import TaskDigests

Clock = Callable[[], float]


class UnknownHostError(SchedulerError):
    """The host has not announced itself (or was dropped): announce, then retry."""

    def __init__(self, host_id: str) -> None:
        super().__init__(
            f"host {host_id} is not announced (expired, or the scheduler restarted): "
            "call AnnounceHost and AnnounceTasks, then retry"
        )
        self.host_id = host_id


class UnknownPeerError(SchedulerError):
    """The peer is not registered (or was dropped): register again."""

    def __init__(self, peer_id: str) -> None:
        super().__init__(
            f"peer {peer_id} is not registered (dropped, or the scheduler restarted): "
            "call RegisterPeer again"
        )
        self.peer_id = peer_id


class NotASeedError(SchedulerError):
    def __init__(self, host_id: str) -> None:
        super().__init__(f"host {host_id} did not announce itself as a seed (type SEED)")
        self.host_id = host_id


class UnknownTaskError(SchedulerError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} is not known to this scheduler")
        self.task_id = task_id


class PeerState(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Host:
    info: HostInfo
    announced_at: float
    peer_ids: set[str] = field(default_factory=set)

    @property
    def host_id(self) -> str:
        return self.info.host_id

    @property
    def is_seed(self) -> bool:
        return self.info.type is HostType.SEED

    @property
    def free_upload_slots(self) -> int:
        return max(0, self.info.upload_slots - self.info.upload_slots_in_use)

    @property
    def free_upload_rate(self) -> int:
        """Bytes/s still free; 0 when the capacity is unlimited (unknown)."""
        if not self.info.upload_capacity:
            return 0
        return max(0, self.info.upload_capacity - self.info.upload_rate)

    @property
    def overloaded(self) -> bool:
        capacity = self.info.upload_capacity
        return self.free_upload_slots == 0 or (capacity > 0 and self.free_upload_rate == 0)

    @property
    def free_share(self) -> float:
        """Free upload capacity in [0, 1]: the scarcer of slots and bandwidth."""
        slots = self.free_upload_slots / self.info.upload_slots
        if not self.info.upload_capacity:
            return slots
        return min(slots, self.free_upload_rate / self.info.upload_capacity)


@dataclass
class Task:
    meta: TaskMeta
    digests: TaskDigests
    peers: dict[str, Peer] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.meta.task_id

    @property
    def piece_count(self) -> int:
        return self.meta.piece_count


@dataclass
class Peer:
    peer_id: str
    host: Host
    task: Task
    pieces: PieceBitmap
    state: PeerState
    updated_at: float  # last registration, announcement or progress
    parents: tuple[str, ...] = ()  # peer ids proposed to this peer while it runs (it keeps them)
    children: set[str] = field(default_factory=set)  # running peers this one was proposed to

    @property
    def is_origin_reader(self) -> bool:
        return self.task.digests.is_reader(self.peer_id)

    @property
    def is_running(self) -> bool:
        return self.state is PeerState.RUNNING


class Resources:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.hosts: dict[str, Host] = {}
        self.tasks: dict[str, Task] = {}
        self.peers: dict[str, Peer] = {}

    # Lookups -----------------------------------------------------------------------------

    def host(self, host_id: str) -> Host:
        host = self.hosts.get(host_id)
        if host is None:
            raise UnknownHostError(host_id)
        return host

    def peer(self, peer_id: str) -> Peer:
        peer = self.peers.get(peer_id)
        if peer is None:
            raise UnknownPeerError(peer_id)
        return peer

    def task(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise UnknownTaskError(task_id)
        return task

    # Hosts -------------------------------------------------------------------------------

    def host_announced(self, info: HostInfo) -> Host:
        host = self.hosts.get(info.host_id)
        if host is None:
            host = self.hosts[info.host_id] = Host(info, self._clock())
        else:
            host.info, host.announced_at = info, self._clock()
        return host

    def host_left(self, host_id: str) -> list[Peer]:
        """Drop the host and its peers; returns the dropped peers."""
        host = self.hosts.pop(host_id, None)
        if host is None:
            return []
        return [self._drop_peer(self.peers[p]) for p in sorted(host.peer_ids)]

    def hosts_silent_for(self, host_ttl: float) -> list[str]:
        """Hosts not announced for ``host_ttl`` seconds (the caller drops them)."""
        deadline = self._clock() - host_ttl
        return sorted(h for h, host in self.hosts.items() if host.announced_at < deadline)

    # Tasks and peers ---------------------------------------------------------------------

    def tasks_announced(self, host_id: str, holdings: Iterable[TaskHolding]) -> list[Peer]:
        """A host re-announced what it holds; complete copies are recorded as finished."""
        peers = []
        for holding in holdings:
            peer = self.peer_registered(host_id, holding.task, holding.pieces)
            if holding.pieces.is_complete:
                self.peer_finished(peer.peer_id)
            peers.append(peer)
        return peers

    def peer_registered(self, host_id: str, meta: TaskMeta, pieces: PieceBitmap) -> Peer:
        """Create the peer, or refresh it (its bitmap is replaced: the host knows best)."""
        host = self.host(host_id)
        task = self._task_seen(meta)
        peer_id = peer_id_of(host_id, meta.task_id)
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = Peer(peer_id, host, task, pieces, PeerState.RUNNING, self._clock())
            self.peers[peer_id] = task.peers[peer_id] = peer
            host.peer_ids.add(peer_id)
        else:
            peer.pieces, peer.state, peer.updated_at = pieces, PeerState.RUNNING, self._clock()
        return peer

    def _task_seen(self, meta: TaskMeta) -> Task:
        task = self.tasks.get(meta.task_id)
        if task is None:
            digests = TaskDigests(meta.task_id, meta.piece_count)
            task = self.tasks[meta.task_id] = Task(meta, digests)
        elif not task.meta.same_content_as(meta):
            raise ProtocolError(
                f"task {meta.task_id}: content_length {meta.content_length} / piece_length "
                f"{meta.piece_length} differ from the registered {task.meta.content_length} / "
                f"{task.meta.piece_length}"
            )
        elif meta.needs_credentials and not task.meta.needs_credentials:
            task.meta = meta  # once any peer needs credentials, never hand it to a seed
        return task

    def pieces_gained(self, peer_id: str, numbers: Iterable[int]) -> Peer:
        peer = self.peer(peer_id)
        peer.pieces = peer.pieces.with_pieces(numbers)
        peer.updated_at = self._clock()
        return peer

    def parents_proposed(self, peer_id: str, parent_ids: Iterable[str]) -> None:
        """The child keeps every parent it was given, so proposals add up while it runs."""
        child = self.peer(peer_id)
        new = [p for p in parent_ids if p not in child.parents and p in child.task.peers]
        child.parents += tuple(new)
        for parent_id in new:
            child.task.peers[parent_id].children.add(peer_id)

    def peer_finished(self, peer_id: str) -> Peer:
        peer = self.peer(peer_id)
        self._orphan(peer)
        peer.pieces = PieceBitmap.full(peer.task.piece_count)
        peer.state, peer.updated_at = PeerState.FINISHED, self._clock()
        return peer

    def peer_failed(self, peer_id: str) -> Peer:
        """The download failed for good: the peer is dropped (its pieces are not offered)."""
        return self._drop_peer(self.peer(peer_id))

    def _orphan(self, child: Peer) -> None:
        """The child needs no parent any more: it stops counting against theirs."""
        for parent_id in child.parents:
            parent = child.task.peers.get(parent_id)
            if parent is not None:
                parent.children.discard(child.peer_id)
        child.parents = ()

    def _drop_peer(self, peer: Peer) -> Peer:
        self._orphan(peer)
        for child_id in peer.children:
            child = peer.task.peers.get(child_id)
            if child is not None:
                child.parents = tuple(p for p in child.parents if p != peer.peer_id)
        del self.peers[peer.peer_id]
        del peer.task.peers[peer.peer_id]
        peer.host.peer_ids.discard(peer.peer_id)
        peer.task.digests.reader_gone(peer.peer_id)
        if not peer.task.peers:
            del self.tasks[peer.task.task_id]
        return peer
