"""Content files on disk: where they live, how they are read and written, how they are locked.

Layout under the store root (only ``content/`` holds files the store may delete)::

    <root>/metadata.db (+ -wal, -shm)   SqliteMetadataStore
    <root>/store.lock                   serialises open/evict between threads and processes
    <root>/content/<id[:2]>/<id>        one sparse file per task, pieces at number*piece_length

A file is *ours* only if it is a regular file (not a symlink) under ``content/<xx>/`` whose name
is a valid task id starting with ``xx``; GC never touches anything else.

Locks are ``flock(2)`` locks, which work between threads (one open file description each) and
between processes, and vanish when a process dies:

- every open ``ContentFile`` holds ``LOCK_SH`` on its file: that is the *pin*;
- eviction takes ``LOCK_EX | LOCK_NB`` on a fresh descriptor and skips the task if it fails,
  so a task open in any thread of any process is never evicted;
- ``StoreLock`` (``LOCK_EX`` on ``store.lock``) is held while a task is created or evicted, so
  "create file, then record task" and "delete record, then unlink file" never interleave.

A *fingerprint* (``ContentFile.fingerprint``) is what ``fstat`` says of an open content file:
size, ``st_mtime_ns``, inode and device. Not ``st_ctime``: delivery hard-links the content file,
and a link changes ctime but not the bytes. ``stamp_fingerprint`` first steps the mtime back by
1 ns, so that any later write, even one in the same timestamp tick on a kernel with coarse file
timestamps, gives the file another mtime (the "racily clean" problem git's index also has).

OS errors are mapped here: ENOSPC/EDQUOT to ``DiskFullError`` naming the path, the rest to
``StorageError``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import blake3

from damselfly.core.digests import PIECE_DIGEST_ALGORITHM, Hasher
from damselfly.core.errors import DiskFullError, StorageError

logger = logging.getLogger(__name__)

TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,127}")
DIR_MODE = 0o700
FILE_MODE = 0o600
_HASH_BUFFER = 256 * 1024
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def validate_task_id(task_id: str) -> None:
    """Task ids become file names: 2-128 of ``[A-Za-z0-9_-]`` (a sha256 hex id passes)."""
    if not TASK_ID_RE.fullmatch(task_id):
        raise ValueError(f"task id {task_id!r}: expected 2-128 characters of [A-Za-z0-9_-]")


class ContentLayout:
    """Maps task ids to content paths and finds the files that are ours."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.content_dir = root / "content"

    def path_for(self, task_id: str) -> Path:
        validate_task_id(task_id)
        return self.content_dir / task_id[:2] / task_id

    def iter_files(self) -> Iterator[tuple[str, os.stat_result]]:
        """``(task_id, lstat)`` of every content file that is ours."""
        for shard in _scandir(self.content_dir):
            if not shard.is_dir(follow_symlinks=False) or len(shard.name) != 2:
                continue
            for entry in _scandir(Path(shard.path)):
                if _is_ours(entry, shard.name):
                    yield entry.name, entry.stat(follow_symlinks=False)

    def size_of(self, task_id: str) -> int:
        """Logical size of a task's content file, 0 if it does not exist."""
        try:
            return os.lstat(self.path_for(task_id)).st_size
        except FileNotFoundError:
            return 0


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def _is_ours(entry: os.DirEntry[str], shard: str) -> bool:
    return (
        entry.is_file(follow_symlinks=False)
        and entry.name.startswith(shard)
        and TASK_ID_RE.fullmatch(entry.name) is not None
    )


class ContentFile:
    """One read-write descriptor on a content file, pinned with ``LOCK_SH`` while open.

    ``pread``/``pwrite`` carry their own offsets, so one descriptor serves many threads.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def open(cls, path: Path, *, create: bool) -> ContentFile:
        """Open (optionally create) ``path`` and take the shared pin lock."""
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        try:
            if create:
                path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, flags, FILE_MODE)
        except OSError as exc:
            raise os_error(path, exc, "open") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    @classmethod
    def open_read_only(cls, path: Path) -> ContentFile:
        """Open any file to read and hash it (a staged output); no pin, nothing written."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise os_error(path, exc, "open") from exc
        return cls(path, fd)

    def size(self) -> int:
        return os.fstat(self._descriptor()).st_size

    def fingerprint(self) -> str:
        """Size, mtime, inode and device of the open file (not ctime: see the module docstring)."""
        return _fingerprint(self._fstat())

    def identity(self) -> tuple[int, int]:
        """Device and inode: which file this is, whatever names it has."""
        st = self._fstat()
        return st.st_dev, st.st_ino

    def still_at_path(self) -> bool:
        """Whether ``path`` still names this open file (a private copy replaces it:
        ``shared_content.unshared``)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise os_error(self.path, exc, "stat") from exc
        return (st.st_dev, st.st_ino) == self.identity()

    def links(self) -> int:
        """How many names the file has: more than one once it was delivered by hard link."""
        return self._fstat().st_nlink

    def change_stamp(self) -> tuple[int, int, int, int, int, int]:
        """What any write to the file changes: device, inode, size, mtime and ctime (ctime
        too: a write that puts mtime back still moves it), and its number of names (a hard
        link to an output gives others a way to write it, even within one ctime tick)."""
        st = self._fstat()
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink)

    def stamp_fingerprint(self) -> str | None:
        """Step the mtime back 1 ns, then fingerprint: any later write changes the result.

        None if the mtime cannot be set (not our file, say): then no fingerprint is safe to
        record, and the caller re-verifies next time instead."""
        before = self._fstat()
        try:
            os.utime(self._descriptor(), ns=(before.st_atime_ns, before.st_mtime_ns - 1))
        except OSError as exc:
            logger.debug("%s: cannot set mtime, no fingerprint: %s", self.path, exc.strerror)
            return None
        return self.fingerprint()

    def resize(self, length: int) -> None:
        """Set the logical size; growing makes a sparse tail (no blocks allocated)."""
        try:
            os.ftruncate(self._descriptor(), length)
        except OSError as exc:
            raise os_error(self.path, exc, "resize") from exc

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
        view = memoryview(data).cast("B")
        fd = self._descriptor()
        try:
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            raise os_error(self.path, exc, f"write at offset {offset}") from exc

    def write_chunks_at(self, offset: int, chunks: Sequence[memoryview]) -> None:
        """Write ``chunks`` back to back from ``offset`` with ``pwritev`` (no joining copy)."""
        pending = [chunk.cast("B") for chunk in chunks if chunk.nbytes]
        fd = self._descriptor()
        try:
            while pending:
                written = os.pwritev(fd, pending[:_IOV_MAX], offset)
                offset += written
                pending = _advance(pending, written)
        except OSError as exc:
            raise os_error(self.path, exc, f"write at offset {offset}") from exc

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``; a short file raises ``StorageError``."""
        chunks = list(self.iter_at(offset, length))
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def iter_at(self, offset: int, length: int, chunk_length: int = 1 << 30) -> Iterator[bytes]:
        fd, end = self._descriptor(), offset + length
        while offset < end:
            try:
                chunk = os.pread(fd, min(chunk_length, end - offset), offset)
            except OSError as exc:
                raise os_error(self.path, exc, f"read at offset {offset}") from exc
            if not chunk:
                raise StorageError(f"{self.path}: file ends before offset {offset}")
            offset += len(chunk)
            yield chunk

    def digest_at(self, offset: int, length: int, buffer: bytearray | None = None) -> str:
        """The piece digest of a byte range (``hash_at`` with a new BLAKE3 hasher)."""
        hasher = blake3.blake3()
        self.hash_at(offset, length, hasher, buffer)
        return f"{PIECE_DIGEST_ALGORITHM}:{hasher.hexdigest()}"

    def hash_at(
        self, offset: int, length: int, hasher: Hasher, buffer: bytearray | None = None
    ) -> None:
        """Feed a byte range to ``hasher``, read into one reused buffer of at most
        ``_HASH_BUFFER`` bytes (or ``buffer``, a caller's own): called from worker threads (a
        piece re-verified, an endgame twin's range re-hashed, a whole-file digest), a new
        piece-sized ``bytes`` per call grew each thread's malloc arena by megabytes that
        stayed resident and made the kernel zero fresh pages for every read (issue 15)."""
        view = memoryview(bytearray(min(length, _HASH_BUFFER)) if buffer is None else buffer)
        fd, end = self._descriptor(), offset + length
        while offset < end:
            want = view[: min(len(view), end - offset)]
            try:
                got = os.preadv(fd, [want], offset)
            except OSError as exc:
                raise os_error(self.path, exc, f"read at offset {offset}") from exc
            if not got:
                raise StorageError(f"{self.path}: file ends before offset {offset}")
            hasher.update(want[:got])
            offset += got

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the pin

    def _fstat(self) -> os.stat_result:
        try:
            return os.fstat(self._descriptor())
        except OSError as exc:
            raise os_error(self.path, exc, "stat") from exc

    def _descriptor(self) -> int:
        if self._fd is None:
            raise StorageError(f"{self.path}: content file is closed")
        return self._fd


def _fingerprint(stat: os.stat_result) -> str:
    return f"size={stat.st_size},mtime_ns={stat.st_mtime_ns},ino={stat.st_ino},dev={stat.st_dev}"


def try_lock_exclusive(path: Path) -> int | None:
    """A descriptor holding ``LOCK_EX`` on ``path``, or None if anyone has it open (pinned)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(path, exc, "lock") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class StoreLock:
    """Exclusive lock over task creation and eviction, across threads and processes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._thread_lock.release()


def os_error(path: Path, exc: OSError, action: str) -> StorageError:
    """Map an ``OSError`` on a store or output path into the damselfly tree."""
    if exc.errno in _NO_SPACE:
        return disk_full(path, exc, action)
    return StorageError(f"{path}: {action} failed: {exc.strerror or exc}")


def disk_full(path: Path, exc: OSError, action: str) -> DiskFullError:
    error = DiskFullError(f"{path}: no space left on device ({action})")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, str(path)
    return error


_IOV_MAX = 512  # stay well under the kernel's IOV_MAX (1024 on Linux)


def _advance(chunks: list[memoryview], written: int) -> list[memoryview]:
    """Drop ``written`` bytes from the front of ``chunks``."""
    while written and chunks:
        first = chunks[0]
        if written >= first.nbytes:
            written -= first.nbytes
            chunks = chunks[1:]
        else:
            chunks = [first[written:], *chunks[1:]]
            written = 0
    return chunks


def validate_lengths(content_length: int, piece_length: int) -> None:
    if content_length < 0:
        raise ValueError(f"content length must be >= 0, got {content_length}")
    if piece_length <= 0:
        raise ValueError(f"piece length must be > 0, got {piece_length}")


def make_store_dirs(content_dir: Path) -> None:
    try:
        content_dir.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        content_dir.mkdir(mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{content_dir}: cannot create the store: {exc.strerror}") from exc
