"""Disk usage and garbage collection of the store's own content files.

Usage is the sum of the **logical sizes** (``st_size``) of our content files. A content file is
created sparse at its full ``content_length`` when the task opens, so its logical size is what
the task will occupy once complete: counting it reserves room for downloads in progress, and a
quota computed this way is never overshot by them. (``st_blocks * 512`` would undercount a task
at 10 % and let two large downloads both pass the check.) Files that are not ours (anything
outside ``content/``, or not named like a content file) are never counted and never deleted.
A content file with more than one name is a user's output too (``shared_content.py``): it
uses no room the store could free, so it counts as 0 bytes and is not evicted to make room
(only by age, ``expire``, which drops the store's name and leaves the output).

One collection, run while the caller holds the ``StoreLock``:

1. *orphan files*: our content files with no metadata row (a crash between creating the file
   and recording the task) are deleted;
2. *orphan rows*: metadata rows whose content file is gone are deleted;
3. *eviction*: tasks, least recently accessed first, are deleted until ``needed_bytes`` are
   freed (``expire`` instead deletes every task not accessed since a cut-off time). A task
   pinned in this process, or whose file anyone holds open (``flock``, see ``content.py``),
   is skipped: an open task is never evicted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from damselfly.storage.content import ContentLayout, os_error, try_lock_exclusive
from damselfly.storage.metadata import MetadataStore

logger = logging.getLogger(__name__)


@dataclass
class GcReport:
    """What one collection did; ``freed_bytes`` counts logical sizes."""

    freed_bytes: int = 0
    evicted: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    orphan_rows: list[str] = field(default_factory=list)


class GarbageCollector:
    def __init__(self, layout: ContentLayout, metadata: MetadataStore) -> None:
        self._layout = layout
        self._metadata = metadata

    def usage_bytes(self) -> int:
        return sum(_own_bytes(stat) for _, stat in self._layout.iter_files())

    def size_of(self, task_id: str) -> int:
        try:
            return _own_bytes(os.lstat(self._layout.path_for(task_id)))
        except FileNotFoundError:
            return 0

    def evictable_bytes(self, pinned: frozenset[str]) -> int:
        """Bytes a collection could free now: our files that nobody holds open."""
        total = 0
        for task_id, stat in self._layout.iter_files():
            if task_id not in pinned and _own_bytes(stat) and self._lockable(task_id):
                total += stat.st_size
        return total

    def collect(self, needed_bytes: int, pinned: frozenset[str]) -> GcReport:
        """Remove orphans, then evict LRU tasks not in ``pinned`` until ``needed_bytes`` freed."""
        report = GcReport()
        files = dict(self._layout.iter_files())
        sizes = {task_id: _own_bytes(stat) for task_id, stat in files.items()}
        tasks = self._metadata.tasks_by_access()
        known = {task.task_id for task in tasks}
        for task_id in sorted(sizes.keys() - known - pinned):
            if self.delete(task_id, with_row=False):
                report.orphan_files.append(task_id)
                report.freed_bytes += sizes[task_id]
        for task in tasks:
            if task.task_id not in sizes and task.task_id not in pinned:
                self._metadata.task_deleted(task.task_id)
                report.orphan_rows.append(task.task_id)
        for task in tasks:
            if report.freed_bytes >= needed_bytes:
                break
            if sizes.get(task.task_id, 1):  # a linked file frees nothing: kept
                self._evict(report, task.task_id, sizes, pinned)
        self._log(report)
        return report

    def expire(self, accessed_before: float, pinned: frozenset[str]) -> GcReport:
        """Evict every task not accessed since ``accessed_before`` (seconds since the epoch)."""
        report = GcReport()
        sizes = {task_id: _own_bytes(stat) for task_id, stat in self._layout.iter_files()}
        for task in self._metadata.tasks_by_access():
            if task.accessed_at >= accessed_before:
                break
            self._evict(report, task.task_id, sizes, pinned)
        self._log(report)
        return report

    def _evict(
        self, report: GcReport, task_id: str, sizes: dict[str, int], pinned: frozenset[str]
    ) -> None:
        """Evict ``task_id`` if it has a file and nobody holds it, and record it in ``report``."""
        if task_id in sizes and task_id not in pinned and self.delete(task_id, with_row=True):
            report.evicted.append(task_id)
            report.freed_bytes += sizes[task_id]

    def delete(self, task_id: str, *, with_row: bool) -> bool:
        """Delete a task's file (and row) if nobody holds it open; False if pinned."""
        path = self._layout.path_for(task_id)
        fd = try_lock_exclusive(path)
        if fd is None:
            return False
        try:
            if with_row:
                self._metadata.task_deleted(task_id)
            _unlink(path)
        finally:
            os.close(fd)
        return True

    def _lockable(self, task_id: str) -> bool:
        fd = try_lock_exclusive(self._layout.path_for(task_id))
        if fd is None:
            return False
        os.close(fd)
        return True

    @staticmethod
    def _log(report: GcReport) -> None:
        if report.evicted or report.orphan_files or report.orphan_rows:
            logger.info(
                "storage gc freed %d bytes: %d evicted, %d orphan files, %d orphan rows",
                report.freed_bytes,
                len(report.evicted),
                len(report.orphan_files),
                len(report.orphan_rows),
            )


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise os_error(path, exc, "delete") from exc


def _own_bytes(stat: os.stat_result) -> int:
    """What deleting this content file would free: nothing while an output shares it."""
    return stat.st_size if stat.st_nlink == 1 else 0
