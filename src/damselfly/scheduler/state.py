"""The scheduler, sans I/O: protocol values in, decisions out.

``SchedulerState`` owns the resources (hosts, tasks, peers), the failure memory, the seed pool
and the counters, and turns each RPC into event-named state changes plus an answer. The gRPC
service (``scheduler/service.py``) only converts messages and delivers seed jobs: after any
call, the seeds listed by ``seeds_with_jobs()`` have jobs to take with ``take_seed_jobs``.

The decision for a peer that needs data (``RegisterPeer``, or ``ReportPeer`` with
``want_parents``), in order (after replacing a lost origin reader, ``scheduler/recovery.py``):

1. the peer is an origin reader of the task          -> BACK_TO_SOURCE (+ any parents)
2. candidate parents exist (``scheduler/evaluator``) -> FROM_PARENTS
3. the peer already holds every piece                -> FROM_PARENTS, no parents
4. an active origin reader exists (fetching now)     -> WAIT_FOR_SEED
5. no credentials needed, and the seed chosen by rendezvous hashing among the connected
   seeds is neither the peer's own host nor already a peer of the task (told before and
   stalled) -> a ``SeedJob`` for it; the seed becomes the task's origin reader and the
   peer's parent at once                              -> WAIT_FOR_SEED (+ the seed)
6. the peer holds pieces and this scheduler started less than ``restart_grace`` ago: the
   task ran before a restart, and its reader's re-announcement is due -> WAIT_FOR_SEED
7. otherwise the peer becomes an origin reader       -> BACK_TO_SOURCE
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    Decision,
    DigestPage,
    HostInfo,
    ParentInfo,
    PeerReport,
    Registration,
    ReportAnswer,
    TaskHolding,
    TaskMeta,
    check_piece_numbers,
    peer_id_of,
)
from damselfly.scheduler.digests import DigestOffer
from damselfly.scheduler.evaluator import (
    DefaultEvaluator,
    Evaluator,
    ScoreWeights,
    is_active_reader,
    select_parents,
)
from damselfly.scheduler.failures import FailureMemory
from damselfly.scheduler.recovery import lost_readers, successor
from damselfly.scheduler.resources import Clock, NotASeedError, Peer, Resources, Task
from damselfly.scheduler.seeds import SeedJob, SeedPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulingLimits:
    max_parents: int = 4
    host_ttl: float = 20.0
    bad_parent_ttl: float = 60.0
    failure_half_life: float = 60.0
    reader_timeout: float = 30.0
    reader_children: int = 4
    restart_grace: float = 10.0
    digest_page_size: int = 4096
    weights: ScoreWeights = field(default_factory=ScoreWeights)


@dataclass(frozen=True)
class SchedulerStatistics:
    hosts: int
    seeds_connected: int
    tasks: int
    peers: int
    seed_jobs_total: int
    registrations: Mapping[Decision, int]
    digests_accepted_total: int
    digests_ignored_total: int
    digest_conflicts_total: int
    hosts_expired_total: int


class SchedulerState:
    def __init__(
        self,
        limits: SchedulingLimits | None = None,
        *,
        clock: Clock = time.monotonic,
        evaluator: Evaluator | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.limits = limits or SchedulingLimits()
        self._clock = clock
        self._rng = rng or random.Random()
        self._started = clock()
        self.resources = Resources(clock)
        self.failures = FailureMemory(
            bad_parent_ttl=self.limits.bad_parent_ttl, half_life=self.limits.failure_half_life
        )
        self.evaluator = evaluator or DefaultEvaluator(self.failures, self.limits.weights)
        self.seeds = SeedPool()
        self._counts: Counter[str] = Counter()
        self._registrations: Counter[Decision] = Counter()

    # Hosts -------------------------------------------------------------------------------

    def host_announced(self, info: HostInfo) -> None:
        self.resources.host_announced(info)

    def host_left(self, host_id: str) -> None:
        for peer in self.resources.host_left(host_id):
            self.failures.peer_gone(peer.peer_id)
        self._reroute(host_id, self.seeds.jobs_withdrawn(host_id))

    def expire_hosts(self) -> list[str]:
        """Drop hosts silent for ``host_ttl``; also forgets stale failure reports."""
        expired = self.resources.hosts_silent_for(self.limits.host_ttl)
        for host_id in expired:
            log.info("host %s expired (no announcement for %.0f s)", host_id,
                     self.limits.host_ttl)  # fmt: skip
            self.host_left(host_id)
        self._counts["hosts_expired"] += len(expired)
        self.failures.forget_expired(self._clock())
        return expired

    def tasks_announced(self, host_id: str, holdings: Sequence[TaskHolding]) -> None:
        peers = self.resources.tasks_announced(host_id, holdings)
        for peer, holding in zip(peers, holdings, strict=True):
            if holding.origin_reader:
                self._count_offer(peer.task.digests.restored(peer.peer_id, holding.digests))

    # Peers -------------------------------------------------------------------------------

    def register_peer(self, host_id: str, meta: TaskMeta, pieces: PieceBitmap) -> Registration:
        peer = self.resources.peer_registered(host_id, meta, pieces)
        decision, parents = self._decide(peer)
        self._registrations[decision] += 1
        digests, _ = peer.task.digests.page(0, self.limits.digest_page_size)
        return Registration(peer.peer_id, decision, parents, digests, peer.task.piece_count)

    def report_peer(self, report: PeerReport) -> ReportAnswer:
        peer = self.resources.peer(report.peer_id)
        check_piece_numbers(peer.task.meta, report.pieces)
        check_piece_numbers(peer.task.meta, (d.number for d in report.digests))
        self.resources.pieces_gained(peer.peer_id, report.pieces)
        self._count_offer(peer.task.digests.offered(peer.peer_id, report.digests))
        now = self._clock()
        for bad in report.bad_parents:
            self.failures.parent_failed(peer.peer_id, bad.peer_id, now)
        for reader in lost_readers(peer, report.bad_parents, self.seeds.connected):
            log.info("task %s: origin reader %s lost", peer.task.task_id[:12], reader.peer_id)
            self.resources.peer_failed(reader.peer_id)
            self.failures.peer_gone(reader.peer_id)
        return self._settle(peer, report)

    def _settle(self, peer: Peer, report: PeerReport) -> ReportAnswer:
        if report.failed:
            log.info("peer %s failed: %.200r", peer.peer_id, report.failure_reason)
            self.resources.peer_failed(peer.peer_id)
            self.failures.peer_gone(peer.peer_id)
            return ReportAnswer()
        if report.finished:
            self.resources.peer_finished(peer.peer_id)
            return ReportAnswer()
        if not report.want_parents:
            return ReportAnswer()
        decision, parents = self._decide(peer)
        return ReportAnswer(decision, parents)

    def piece_digests(self, task_id: str, from_piece: int) -> DigestPage:
        task = self.resources.task(task_id)
        digests, truncated = task.digests.page(from_piece, self.limits.digest_page_size)
        return DigestPage(digests, task.piece_count, truncated)

    # Decisions ---------------------------------------------------------------------------

    def _decide(self, peer: Peer) -> tuple[Decision, tuple[ParentInfo, ...]]:
        self._replace_lost_reader(peer.task)
        if peer.is_origin_reader:
            return Decision.BACK_TO_SOURCE, self._propose(peer)
        parents = self._propose(peer)
        if parents or peer.pieces.is_complete:
            return Decision.FROM_PARENTS, parents
        if self._active_reader_exists(peer):
            return Decision.WAIT_FOR_SEED, ()
        if self._seed_job_created(peer.task, exclude_host=peer.host.host_id):
            return Decision.WAIT_FOR_SEED, self._propose(peer)
        if peer.pieces.count and self._clock() - self._started < self.limits.restart_grace:
            return Decision.WAIT_FOR_SEED, ()  # the task ran before we started: its reader
            # will announce itself again (restart_grace); electing another reads the origin twice
        peer.task.digests.reader_chosen(peer.peer_id)
        return Decision.BACK_TO_SOURCE, ()

    def _replace_lost_reader(self, task: Task) -> None:
        if self._clock() - self._started < self.limits.restart_grace:
            return  # readers re-announce themselves after a restart
        chosen = successor(task)
        if chosen is not None:
            task.digests.reader_chosen(chosen.peer_id)
            self._counts["readers_replaced"] += 1
            log.info("task %s: %s reads the rest from the origin (%d pieces held)",
                     task.task_id[:12], chosen.peer_id, chosen.pieces.count)  # fmt: skip

    def _propose(self, peer: Peer) -> tuple[ParentInfo, ...]:
        chosen = select_parents(
            peer,
            self.evaluator,
            self.failures,
            max_parents=self.limits.max_parents,
            now=self._clock(),
            reader_timeout=self.limits.reader_timeout,
            reader_children=self.limits.reader_children,
            rng=self._rng,
        )
        self.resources.parents_proposed(peer.peer_id, (p.peer_id for p in chosen))
        return tuple(_parent_info(p) for p in chosen)

    def _active_reader_exists(self, child: Peer) -> bool:
        """Someone is reading the origin: wait for it, even if this child gave up on it as a
        parent (a busy reader times requests out): one more reader would read the origin
        again. A child that truly cannot get the pieces goes to the source on its own stall
        timeout."""
        fresh_after = self._clock() - self.limits.reader_timeout
        return any(
            is_active_reader(peer, fresh_after)
            for peer in child.task.peers.values()
            if peer is not child
        )

    # Seeds -------------------------------------------------------------------------------

    def seed_connected(self, host_id: str) -> None:
        """A seed opened its job stream; it must have announced itself as a seed."""
        if not self.resources.host(host_id).is_seed:
            raise NotASeedError(host_id)
        self.seeds.seed_connected(host_id)

    def seed_disconnected(self, host_id: str) -> None:
        self._reroute(host_id, self.seeds.seed_disconnected(host_id))

    def take_seed_jobs(self, host_id: str) -> list[SeedJob]:
        return self.seeds.take_jobs(host_id)

    def next_seed_job(self, host_id: str) -> SeedJob | None:
        return self.seeds.next_job(host_id)

    def seeds_with_jobs(self) -> list[str]:
        return self.seeds.with_pending_jobs()

    def _eligible_seeds(self) -> list[str]:
        hosts = self.resources.hosts
        return [h for h in self.seeds.connected if h in hosts and hosts[h].is_seed]

    def _seed_job_created(self, task: Task, *, exclude_host: str) -> bool:
        if task.meta.needs_credentials:
            return False
        seed_id = self.seeds.choose(task.task_id, self._eligible_seeds())
        if seed_id is None or seed_id == exclude_host:
            return False
        if peer_id_of(seed_id, task.task_id) in self.resources.peers:
            return False  # told before and stalled (or holds only part): not told again

        seed_peer = self.resources.peer_registered(
            seed_id, task.meta, PieceBitmap.empty(task.piece_count)
        )
        task.digests.reader_chosen(seed_peer.peer_id)
        self.seeds.job_queued(seed_id, SeedJob(task.meta))
        self._counts["seed_jobs"] += 1
        log.info("task %s: seed job for %s", task.task_id[:12], seed_id)
        return True

    def _reroute(self, seed_id: str, jobs: list[SeedJob]) -> None:
        """Jobs ``seed_id`` will never receive: drop its placeholder peer, pick another seed."""
        for job in jobs:
            placeholder = self.resources.peers.get(peer_id_of(seed_id, job.task.task_id))
            if placeholder is not None and placeholder.pieces.count == 0:
                self.resources.peer_failed(placeholder.peer_id)
            task = self.resources.tasks.get(job.task.task_id)
            if task is not None:
                self._seed_job_created(task, exclude_host=seed_id)

    # Statistics --------------------------------------------------------------------------

    def _count_offer(self, offer: DigestOffer) -> None:
        self._counts["digests_accepted"] += offer.accepted
        self._counts["digests_ignored"] += offer.ignored
        self._counts["digest_conflicts"] += len(offer.conflicts)

    def statistics(self) -> SchedulerStatistics:
        r = self.resources
        return SchedulerStatistics(
            hosts=len(r.hosts),
            seeds_connected=len(self._eligible_seeds()),
            tasks=len(r.tasks),
            peers=len(r.peers),
            seed_jobs_total=self._counts["seed_jobs"],
            registrations=dict(self._registrations),
            digests_accepted_total=self._counts["digests_accepted"],
            digests_ignored_total=self._counts["digests_ignored"],
            digest_conflicts_total=self._counts["digest_conflicts"],
            hosts_expired_total=self._counts["hosts_expired"],
        )


def _parent_info(peer: Peer) -> ParentInfo:
    host = peer.host
    return ParentInfo(
        peer_id=peer.peer_id,
        host_id=host.host_id,
        ip=host.info.ip,
        upload_port=host.info.upload_port,
        type=host.info.type,
        pieces=peer.pieces,
        free_upload_slots=host.free_upload_slots,
        free_upload_rate=host.free_upload_rate,
        origin_reader=peer.is_origin_reader,
    )
