"""Tasks whose peer-served bytes failed a check against the origin: served from the origin only.

A daemon that assembled a file from peers and then found it wrong against the origin (the
whole-file checksum failed, or a spot check of pieces read from the origin disagreed with the
digests the scheduler handed out: ``daemon/engine/spot_check.py``) reports
``content_rejected``. The digests came from the task's origin reader, so the reader lied or
read something else; either way nothing the mesh holds for the task can be trusted. Then:

- the task's digests are discarded (a fresh ``TaskDigests`` that never accepts a restore
  claim), and every origin reader it had is recorded as *blocked* for it, with a failure
  against it for every reporting child (its parent score drops for everyone);
- from now on the task is **origin-only** in this scheduler: every registration is answered
  ``BACK_TO_SOURCE`` with no parents and no digests, digests reported for it are dropped,
  re-announced reader claims are stripped. Every node reads it from the origin with its own
  request, which is always correct, at the price of origin bytes.

Who may trigger it: a peer registered for the task (its reporter). A lying peer can only make
a task origin-only (more origin traffic, never wrong bytes); each rejection is logged with the
node that asked. The set is bounded (``capacity``, oldest forgotten first) and lives as long as
the scheduler process.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from damselfly.protocol.messages import split_peer_id
from damselfly.scheduler.digests import TaskDigests
from damselfly.scheduler.state import SchedulerState

log = logging.getLogger(__name__)


class Quarantine:
    def __init__(self, state: SchedulerState, *, capacity: int = 10_000) -> None:
        self._state = state
        self._capacity = capacity
        self._blocked: OrderedDict[str, frozenset[str]] = OrderedDict()  # task -> reader hosts
        self.rejections = 0

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._blocked

    def blocked_hosts(self, task_id: str) -> frozenset[str]:
        return self._blocked.get(task_id, frozenset())

    def content_rejected(self, task_id: str, reporter_peer_id: str, now: float) -> None:
        """``reporter_peer_id`` found the task's peer bytes wrong against the origin."""
        task = self._state.resources.tasks.get(task_id)
        if task is None or reporter_peer_id not in task.peers:
            return  # only a peer of the task may reject it
        readers = task.digests.readers
        for reader in readers:
            self._state.failures.parent_failed(reporter_peer_id, reader, now)
        hosts = frozenset(split_peer_id(reader)[0] for reader in readers)
        fresh = TaskDigests(task_id, task.piece_count)
        fresh.reader_chosen("-")  # "had a reader": restore claims are never accepted again
        fresh.reader_gone("-")
        task.digests = fresh
        self.rejections += 1
        self._blocked[task_id] = self.blocked_hosts(task_id) | hosts
        self._blocked.move_to_end(task_id)
        while len(self._blocked) > self._capacity:
            self._blocked.popitem(last=False)
        log.warning("task %s: peer bytes rejected by %s against the origin; origin readers %s "
                    "blocked, the task is origin-only now", task_id[:12], reporter_peer_id,
                    ", ".join(sorted(hosts)) or "none")  # fmt: skip
