"""Seed peers: which seed reads a new task from the origin, and the jobs waiting for each seed.

A seed is *connected* while it holds a ``WatchSeedJobs`` stream open. The seed of a task is
chosen by rendezvous hashing of the task id over the connected seeds' host ids (those the
caller deems eligible: announced, of type seed)
(``protocol/rendezvous.py``): stable while the set of seeds is stable, and when a seed leaves
only the tasks it had move. Each seed has a FIFO of jobs not yet delivered on its stream.
Pure state: the gRPC stream drains the queue with ``take_jobs``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from damselfly.protocol.messages import TaskMeta
from damselfly.protocol.rendezvous import rendezvous_choice


@dataclass(frozen=True)
class SeedJob:
    """Tell a seed to read ``task`` from the origin and share its pieces."""

    task: TaskMeta


class SeedPool:
    def __init__(self) -> None:
        self._queues: dict[str, deque[SeedJob]] = {}
        self._streams: dict[str, int] = {}  # open streams per seed (a reconnect may overlap)

    @property
    def connected(self) -> frozenset[str]:
        return frozenset(self._queues)

    def seed_connected(self, host_id: str) -> None:
        self._queues.setdefault(host_id, deque())
        self._streams[host_id] = self._streams.get(host_id, 0) + 1

    def seed_disconnected(self, host_id: str) -> list[SeedJob]:
        """A stream of the seed ended; when it was the last, returns the undelivered jobs."""
        streams = self._streams.get(host_id, 0) - 1
        if streams > 0:
            self._streams[host_id] = streams
            return []
        self._streams.pop(host_id, None)
        return list(self._queues.pop(host_id, ()))

    def jobs_withdrawn(self, host_id: str) -> list[SeedJob]:
        """The seed host left or expired: its undelivered jobs, to send elsewhere.

        An open stream stays connected: the host may announce itself again.
        """
        return self.take_jobs(host_id)

    def choose(self, task_id: str, eligible: Iterable[str] | None = None) -> str | None:
        """The seed for ``task_id`` among the connected (and ``eligible``) seeds."""
        seeds = self.connected if eligible is None else self.connected & set(eligible)
        return rendezvous_choice(task_id, seeds)

    def job_queued(self, host_id: str, job: SeedJob) -> None:
        self._queues[host_id].append(job)

    def take_jobs(self, host_id: str) -> list[SeedJob]:
        queue = self._queues.get(host_id)
        if not queue:
            return []
        jobs = list(queue)
        queue.clear()
        return jobs

    def next_job(self, host_id: str) -> SeedJob | None:
        queue = self._queues.get(host_id)
        return queue.popleft() if queue else None

    def pending(self, host_id: str) -> int:
        return len(self._queues.get(host_id, ()))

    def with_pending_jobs(self) -> list[str]:
        return sorted(host_id for host_id, queue in self._queues.items() if queue)
