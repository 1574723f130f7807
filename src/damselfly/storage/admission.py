"""Making room for a task before it starts, or refusing it with one clear line.

``Admission.admit`` runs under the store lock when a task opens, in this order:

1. *age*: with ``max_age_seconds``, every task not accessed for that long is evicted;
2. *quota*: usage (logical sizes, see ``gc.py``) plus the new task must fit the quota; LRU
   tasks nobody holds open are evicted to make it fit;
3. *free space*: what the task still has to allocate must fit the room left on the file
   system (``space.py``: free space minus the promised tails of open tasks, a metadata
   headroom and the reserve); LRU tasks are evicted until it does;
4. the metadata reserve is re-created if a full disk used it up.

A task that still does not fit raises ``NoSpaceError`` ("no space for N bytes in STORE
(free F)"), before any byte is fetched. Eviction never touches a task open anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from damselfly.core.errors import NoSpaceError
from damselfly.storage.gc import GarbageCollector
from damselfly.storage.space import DiskSpace, SpaceReserve


class Admission:
    def __init__(
        self,
        root: Path,
        gc: GarbageCollector,
        space: DiskSpace,
        reserve: SpaceReserve,
        *,
        quota_bytes: int | None,
        max_age_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = root
        self._gc = gc
        self._space = space
        self._reserve = reserve
        self._quota_bytes = quota_bytes
        self._max_age_seconds = max_age_seconds
        self._clock = clock

    def admit(self, task_id: str, content_length: int, pinned: frozenset[str]) -> None:
        """Make room for ``task_id`` (pinned must include it) or raise ``NoSpaceError``."""
        self.expire(pinned)
        self._within_quota(task_id, content_length, pinned)
        self._on_disk(task_id, content_length, pinned)
        self._reserve.ensure()

    def collect(self, needed_bytes: int, pinned: frozenset[str]) -> int:
        """Expire old tasks, then evict LRU ones until ``needed_bytes`` are freed and usage
        is within the quota; returns the bytes freed."""
        freed = self.expire(pinned)
        target = needed_bytes
        if self._quota_bytes is not None:
            target = max(target, self._gc.usage_bytes() - self._quota_bytes)
        return freed + self._gc.collect(max(0, target), pinned).freed_bytes

    def expire(self, pinned: frozenset[str]) -> int:
        if self._max_age_seconds is None:
            return 0
        cutoff = self._clock() - self._max_age_seconds
        return self._gc.expire(cutoff, pinned).freed_bytes

    def _within_quota(self, task_id: str, content_length: int, pinned: frozenset[str]) -> None:
        if self._quota_bytes is None:
            return
        in_use = self._gc.usage_bytes() - self._gc.size_of(task_id)
        shortfall = in_use + content_length - self._quota_bytes
        if shortfall <= 0:
            return
        evictable = self._gc.evictable_bytes(pinned)
        if evictable < shortfall:
            room = max(0, self._quota_bytes - in_use) + evictable
            raise NoSpaceError(content_length, str(self._root), room, self._quota_bytes)
        self._gc.collect(shortfall, pinned)

    def _on_disk(self, task_id: str, content_length: int, pinned: frozenset[str]) -> None:
        needed = self._space.needed_bytes(task_id, content_length)
        room = self._space.room_bytes(task_id)
        while needed > room:
            report = self._gc.collect(needed - room, pinned)
            if not (report.evicted or report.orphan_files):
                raise NoSpaceError(content_length, str(self._root), max(0, room))
            room = self._space.room_bytes(task_id)
