"""Room on the store's disk: the check before a task starts, and the reserve that keeps the
metadata writable when the disk fills anyway.

Why both. The check (``DiskSpace.room_bytes``) refuses a task that cannot fit before a byte
is fetched: free space (``statvfs``, what an unprivileged writer may use) minus the unwritten
tails of every content file already open (a content file is created sparse at its full length,
so its missing pieces are space already promised; counting them is the reservation), minus a
headroom for the metadata rows the download will add. It cannot see other writers on the same
file system, so a disk that someone else fills still hits ENOSPC mid-download.

Then SQLite would fail too (a WAL append needs free pages), and the store could no longer
record a failure, drop a piece or delete a task: every later download would fail, which is how
a full disk used to wedge a daemon. So the store keeps ``metadata.reserve``, a file of real
(not sparse) bytes. ``SqliteMetadataStore`` given a ``SpaceReserve`` deletes it and retries
once when a write fails with SQLITE_FULL, so the failure can be recorded and the task's space
released; ``Store`` re-creates it the next time it admits a task with room to spare. A
pre-allocated WAL was the other choice; it does not help the ``DELETE`` that frees a task,
which also needs WAL pages, and SQLite truncates the WAL at checkpoints anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from damselfly.storage.content import FILE_MODE, ContentLayout

logger = logging.getLogger(__name__)

RESERVE_NAME = "metadata.reserve"
RESERVE_LENGTH = 4 * 1024 * 1024  # on a file system of 256 MiB and more; 1/64th below
METADATA_HEADROOM_LENGTH = 1024 * 1024  # likewise
_MIN_LENGTH = 64 * 1024
_BLOCK = 512  # st_blocks unit


class SpaceReserve:
    """A file of real bytes that can be given back to the file system in an emergency."""

    def __init__(self, path: Path, length: int | None = None) -> None:
        self.path = path
        self.length = length if length is not None else scaled(path.parent, RESERVE_LENGTH)
        self._lock = threading.Lock()

    def present(self) -> bool:
        try:
            return os.stat(self.path).st_blocks * _BLOCK >= self.length
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Create the reserve if it is missing; False if there is no room for it."""
        with self._lock:
            if self.present():
                return True
            try:
                _write_zeros(self.path, self.length)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self.path.unlink()
                logger.warning("%s: cannot create the space reserve: %s", self.path, exc.strerror)
                return False
            return True

    def release(self) -> bool:
        """Delete the reserve to make room; True if there was one to delete."""
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            logger.warning("%s: disk full, space reserve released for the metadata", self.path)
            return True


class DiskSpace:
    """What a new task may still use on the store's file system."""

    def __init__(self, layout: ContentLayout, reserve: SpaceReserve) -> None:
        self._layout = layout
        self._reserve = reserve
        self._headroom_length = scaled(layout.root, METADATA_HEADROOM_LENGTH)

    def free_bytes(self) -> int:
        stat = os.statvfs(self._layout.root)
        return stat.f_bavail * stat.f_frsize

    def room_bytes(self, except_task: str | None = None) -> int:
        """Free space minus promised tails, the metadata headroom and a missing reserve."""
        promised = sum(
            _unwritten(stat) for task, stat in self._layout.iter_files() if task != except_task
        )
        missing_reserve = 0 if self._reserve.present() else self._reserve.length
        return self.free_bytes() - promised - self._headroom_length - missing_reserve

    def needed_bytes(self, task_id: str, content_length: int) -> int:
        """Bytes ``task_id`` still has to allocate to hold ``content_length``."""
        try:
            held = os.lstat(self._layout.path_for(task_id)).st_blocks * _BLOCK
        except FileNotFoundError:
            held = 0
        return max(0, content_length - held)


def space_reserve(root: Path) -> SpaceReserve:
    """The reserve of the store at ``root``. A long-running daemon ``ensure``s it at start
    rather than at the first task's admission: 4 MiB written off the first download's path."""
    return SpaceReserve(root / RESERVE_NAME)


def scaled(root: Path, length: int) -> int:
    """``length``, or 1/64th of a small file system (so a tiny disk can still hold tasks)."""
    try:
        stat = os.statvfs(root)
    except OSError:
        return length
    return max(_MIN_LENGTH, min(length, stat.f_blocks * stat.f_frsize // 64))


def _unwritten(stat: os.stat_result) -> int:
    return max(0, stat.st_size - stat.st_blocks * _BLOCK)


def _write_zeros(path: Path, length: int) -> None:
    """Real blocks, not a sparse file (a hole would give nothing back when deleted)."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        chunk = bytes(min(length, 1024 * 1024))
        written = 0
        while written < length:
            written += os.write(fd, chunk[: length - written])
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    os.close(fd)
    os.replace(partial, path)
