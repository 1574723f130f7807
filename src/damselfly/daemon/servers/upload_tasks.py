"""The piece server's open tasks: one ``SharedTask`` per task it serves, kept in an LRU.

A ``SharedTask`` holds the store's handle (a pin against GC), a read-only descriptor of the
content file for ``sendfile``/``pread``, and what is known to be good without hashing again:
pieces re-checked under the file's current fingerprint, and pieces this daemon's store hashed
and wrote itself while nobody else has written to the file since (``TaskStorage.vouches_for``,
``storage/piece_index.py``). ``TaskCache`` opens each task
once (in a worker thread; ``Store.open_task`` may re-verify) however many requests wait, and
closes evicted handles when their last request ends. Openers run as tasks of the server's
``BackgroundTasks`` (``spawn``); each hands its outcome, error included, to every waiter, so a
failed open never ends the server. See ``upload_server.py`` for the rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import blake3

from damselfly.core.errors import StorageError
from damselfly.storage.store import Store, TaskStorage

Fingerprint = tuple[int, int, int, int, int, int]
Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


def fingerprint_of(st: os.stat_result) -> Fingerprint:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)


class SharedTask:
    """One task as the server holds it open: the store handle (pin + records), a read-only
    descriptor of the content file (for ``sendfile``/``pread``) and which pieces were
    re-checked under which fingerprint of the file."""

    def __init__(self, storage: TaskStorage) -> None:
        self.storage = storage
        self.task_id = storage.task_id
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        self.reader = os.fdopen(os.open(storage.content_path, flags), "rb", buffering=0)
        self.fileno = self.reader.fileno()
        self.loop_read_flags = loop_read_flags(self.fileno)  # ``read_cached``
        self.users = 0
        self.retired = False
        self._verified: set[int] = set()
        self._fingerprint: Fingerprint | None = None

    def fingerprint(self) -> Fingerprint:
        return fingerprint_of(os.fstat(self.fileno))

    def stale(self) -> bool:
        """The store replaced the task's file (a private copy of one a changed output shares,
        ``storage/shared_content.py``): this handle reads the user's file, not the store's."""
        return not self.storage.still_at_path()

    def verified_since_change(self, number: int) -> tuple[bool, Fingerprint]:
        """Was ``number`` verified since the file last changed (by a re-check, or by our
        store as it wrote it, if only we wrote since)? And the fingerprint now."""
        now = self.fingerprint()
        if now != self._fingerprint:
            self._verified.clear()
            self._fingerprint = now
        return number in self._verified or self.storage.vouches_for(number), now

    def piece_verified(self, number: int, before: Fingerprint) -> None:
        """Record a good re-check, if the file did not change while it ran."""
        if before == self._fingerprint == self.fingerprint():
            self._verified.add(number)

    def piece_failed(self, number: int) -> None:
        self._verified.discard(number)

    def close(self) -> None:
        self.reader.close()
        self.storage.close()


def _open_shared(store: Store, task_id: str) -> SharedTask | None:
    """Open a recorded task with its recorded geometry (blocking: ``open_task`` verifies)."""
    meta = store.get_task(task_id)
    if meta is None:
        return None
    storage = store.open_task(
        task_id,
        url=meta.url,
        content_length=meta.content_length,
        piece_length=meta.piece_length,
        content_digest=meta.content_digest,
    )
    try:
        return SharedTask(storage)
    except OSError as exc:
        storage.close()
        raise StorageError(f"task {task_id}: cannot open its content: {exc.strerror}") from exc
    except BaseException:
        storage.close()
        raise


class TaskCache:
    """An LRU of open ``SharedTask``s; one opener per task; retired handles close when idle."""

    def __init__(
        self,
        store: Store,
        *,
        capacity: int,
        spawn: Spawn,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"open task limit must be > 0, got {capacity}")
        self._store = store
        self._capacity = capacity
        self._entries: OrderedDict[str, SharedTask] = OrderedDict()
        self._spawn = spawn
        self._opening: dict[str, asyncio.Task[SharedTask | Exception | None]] = {}
        self._closed = False
        self.opened = 0

    @contextlib.asynccontextmanager
    async def use(self, task_id: str) -> AsyncIterator[SharedTask | None]:
        """The open task (None if the store does not have it), kept open while in use."""
        task = await self._get(task_id)
        if task is None:
            yield None
            return
        task.users += 1
        try:
            yield task
        finally:
            task.users -= 1
            if task.retired and task.users == 0:
                task.close()

    def forget(self, task_id: str) -> None:
        entry = self._entries.pop(task_id, None)
        if entry is not None:
            self._retire(entry)

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(*self._opening.values(), return_exceptions=True)
        while self._entries:
            _, entry = self._entries.popitem()
            entry.users = 0
            self._retire(entry)

    async def _get(self, task_id: str) -> SharedTask | None:
        if self._closed:
            raise StorageError("upload server is closing")
        entry = self._entries.get(task_id)
        if entry is not None and entry.stale():
            self.forget(task_id)
            entry = None
        if entry is not None:
            self._entries.move_to_end(task_id)
            return entry
        opening = self._opening.get(task_id)
        if opening is None:
            opening = self._opening[task_id] = self._spawn(self._open_outcome(task_id))
        outcome = await asyncio.shield(opening)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _open_outcome(self, task_id: str) -> SharedTask | Exception | None:
        try:
            return await self._open(task_id)
        except Exception as exc:  # the waiters raise it
            return exc

    async def _open(self, task_id: str) -> SharedTask | None:
        try:
            entry = await asyncio.to_thread(_open_shared, self._store, task_id)
        finally:
            del self._opening[task_id]
        if entry is None:
            return None
        self.opened += 1
        if self._closed:
            entry.close()
            raise StorageError("upload server is closing")
        self._entries[task_id] = entry
        while len(self._entries) > self._capacity:
            self._retire(self._entries.popitem(last=False)[1])
        return entry

    def _retire(self, entry: SharedTask) -> None:
        entry.retired = True
        if entry.users == 0:
            entry.close()


def read_and_hash(fd: int, offset: int, length: int, hasher: blake3.blake3 | None) -> bytes | None:
    """Read exactly ``length`` bytes and feed them to ``hasher`` (if any); None if they are
    not there."""
    try:
        data = os.pread(fd, length, offset)
        while len(data) < length:
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                return None
            data += more
    except OSError:
        return None  # an unreadable piece is as bad as a corrupt one
    if hasher is not None:
        hasher.update(data)
    return data


MEMORY_FILE_SYSTEMS = frozenset({0x01021994, 0x858458F6})  # TMPFS_MAGIC, RAMFS_MAGIC
_libc = ctypes.CDLL(None, use_errno=True)


def loop_read_flags(fd: int) -> int | None:
    """How ``read_cached`` may read ``fd`` on the event loop: ``RWF_NOWAIT`` (ext4, xfs: the
    kernel refuses what the page cache does not hold), 0 (tmpfs, ramfs with no swap on: the
    file is memory, nothing to wait for), or None (only in a worker thread)."""
    if _file_system_type(fd) in MEMORY_FILE_SYSTEMS and not _swap_on():
        return 0
    try:
        os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)  # one 1-byte probe
    except BlockingIOError:
        return os.RWF_NOWAIT  # supported, just not cached now
    except OSError:
        return None  # tmpfs (no RWF_NOWAIT), a pipe, ...
    return os.RWF_NOWAIT


def read_cached(fd: int, offset: int, length: int, flags: int) -> bytes | bytearray | None:
    """Exactly ``length`` bytes if they can be had without waiting for a disk, else None (then
    read them in a worker thread with ``read_and_hash``). ``flags`` from ``loop_read_flags``:
    with ``RWF_NOWAIT`` the kernel refuses instead of waiting, so this may run on the event
    loop: a 256 KiB copy from memory costs less than the thread hop it saves (the TLS send path,
    where ``sendfile`` cannot be used). On a memory file system (``flags`` 0) the bytes come
    from ``pread`` into a new ``bytes``: no zero-filled buffer first (``memset`` was 0.6 % of
    the mTLS daemons' CPU in the swarm)."""
    try:
        if not flags:
            data = os.pread(fd, length, offset)
            return data if len(data) == length else None
        buffer = bytearray(length)
        got = os.preadv(fd, [buffer], offset, flags)
    except OSError:  # EAGAIN: not all cached; EOPNOTSUPP: this file system cannot say
        return None
    return buffer if got == length else None


def _file_system_type(fd: int) -> int | None:
    """``fstatfs``'s ``f_type`` (the first field of ``struct statfs``, a C long on Linux)."""
    buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.fstatfs(fd, buffer) != 0:
        return None
    return int(ctypes.c_long.from_buffer(buffer).value)


def _swap_on() -> bool:
    """Is any swap active? Then tmpfs pages may sit on a disk."""
    try:
        return len(Path("/proc/swaps").read_text().splitlines()) > 1
    except OSError:
        return True
