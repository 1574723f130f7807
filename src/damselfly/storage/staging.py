"""``StagedOutput``: a download's output, copied and checked piece by piece while it downloads.

Delivering a finished task used to be two passes at the end (``output.deliver_file``): copy
the whole content file beside the output, then hash every piece of the copy. In a swarm every
node finishes at about the same moment, so the nodes did both passes together, on CPUs that
had been half idle while the pieces came in (issue 15: ~5 s of both cores at the end of an
8 x 256 MiB round, most of it in the kernel's copy). A ``StagedOutput`` does the same work as
each piece is recorded, while its bytes are still in the page cache:

- the staged file is an unnamed file (``O_TMPFILE``) in the output's directory: a process
  killed mid-download leaves nothing there;
- ``copy_pieces`` copies a recorded piece's range from the content file (``copy_file_range``:
  a reflink where the file system can) and hashes that range *of the staged file*; only a
  match marks the piece checked, under the digest it was checked against;
- ``finish`` copies and checks every recorded piece not checked under its current digest,
  sets the length, fsyncs, and links the file at the output (``linkat`` through ``/proc``, so
  an output that appeared meanwhile is not clobbered; with ``overwrite``, at a hidden name
  renamed over it), all in one locked step, and closes it. Pieces whose staged
  bytes do not match are returned and nothing appears (the store drops them, the download
  fetches them again and finishes once more).

So the guarantee is the one ``deliver_file`` gives: every byte handed out was hashed where it
was handed out, against the piece digests, whatever the store's file did meanwhile.

Where the file system has no ``O_TMPFILE`` (or the output's directory refuses it) ``open``
returns None and the download delivers at the end as before. Missing directories on the way to
the output are made by ``open`` and removed by ``discard`` unless the file was delivered. One lock
serialises the copies, ``finish`` and ``discard``: the descriptor is never closed under a copy
running in a thread. A piece the content file ends before (cut: the origin changed, the task
failed) is not checked; ``finish`` returns it as bad if it is still recorded then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from damselfly.core.errors import OutputError
from damselfly.storage.content import ContentFile
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.output import (
    OUTPUT_MODE,
    check_destination,
    commit,
    fsync_dir,
    output_error,
    temp_path,
)

_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EMFILE}
_COPY_FALLBACK = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}
_BUFFER = 256 * 1024  # hashing a staged piece, or copying one where the kernel cannot
_PROC_FDS = "/proc/self/fd"
# linkat of an unnamed file refused (a sandbox), or the output's directory gone meanwhile
_LINK_REFUSED = {errno.EPERM, errno.ENOENT, errno.EXDEV, errno.EINVAL, errno.ENOTSUP}


class StagingUnavailable(OutputError):
    """The staged file cannot be put at the output here (no ``linkat`` through ``/proc`` in
    this sandbox, the output's directory gone): deliver the way that needs neither."""


class StagedOutput:
    def __init__(
        self, dest: Path, fd: int, *, overwrite: bool, made: tuple[Path, ...] = ()
    ) -> None:
        self.dest = dest
        self._fd: int | None = fd
        self._overwrite = overwrite
        self._made = made  # directories ``open`` created for ``dest``, outermost first
        self._task_id: str | None = None
        self._checked: dict[int, str] = {}  # piece number -> the digest its staged bytes match
        self._lock = threading.Lock()
        self._buffer = bytearray()  # pieces are hashed (and copied, if need be) through it

    @classmethod
    def open(cls, dest: Path, *, overwrite: bool) -> StagedOutput | None:
        """An unnamed file in ``dest``'s directory, or None where none can be made there.
        Missing directories are made now, and removed again by ``discard`` unless the file
        was delivered (a download that fails leaves nothing behind)."""
        if not os.path.isdir(_PROC_FDS):
            return None  # no /proc: the file could not be linked at the end
        missing = _missing_directories(dest.parent)
        check_destination(dest, overwrite=overwrite)  # makes them
        made = tuple(d for d in missing if d.is_dir())
        try:
            fd = os.open(dest.parent, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, OUTPUT_MODE)
        except OSError as exc:
            _remove_empty(made)
            if exc.errno in _NO_TMPFILE:
                return None
            raise output_error(dest, exc) from exc
        return cls(dest, fd, overwrite=overwrite, made=made)

    def checked(self, task_id: str) -> frozenset[int]:
        """Pieces of ``task_id`` staged and found matching so far."""
        with self._lock:
            return frozenset(self._checked) if task_id == self._task_id else frozenset()

    def copy_pieces(self, task_id: str, source: Path, pieces: Iterable[PieceMeta]) -> list[int]:
        """Copy ``pieces`` of ``task_id``'s content file ``source`` here and hash them here;
        returns the numbers whose staged bytes do not match their digests. Pieces already
        checked under the same digest are skipped; another task id starts afresh (the origin
        changed and the download started again)."""
        with self._lock:
            return self._stage(task_id, source, pieces)

    def finish(
        self, task_id: str, source: Path, pieces: Iterable[PieceMeta], content_length: int
    ) -> list[int]:
        """Stage what is left of a complete task, then link the file at ``dest`` and close it;
        returns the bad pieces instead (nothing is linked then, and the staged file is kept).
        One locked step: nothing is written here between the last check and the link."""
        with self._lock:
            bad = self._stage(task_id, source, pieces)
            if bad:
                return bad
            fd = self._descriptor()
            try:
                os.ftruncate(fd, content_length)
                os.fsync(fd)
            except OSError as exc:
                raise output_error(self.dest, exc) from exc
            self._link(fd)
            self._fd, self._made = None, ()
            os.close(fd)
        fsync_dir(self.dest.parent)
        return []

    def discard(self) -> None:
        """Close the file (it vanishes unless ``finish`` linked it at ``dest``), and remove
        the directories ``open`` made if nothing else came into them meanwhile."""
        with self._lock:
            fd, self._fd = self._fd, None
            made, self._made = self._made, ()
        if fd is not None:
            os.close(fd)
        _remove_empty(made)

    def _stage(self, task_id: str, source: Path, pieces: Iterable[PieceMeta]) -> list[int]:
        fd = self._descriptor()
        if task_id != self._task_id:
            self._task_id, self._checked = task_id, {}
        todo = [p for p in pieces if self._checked.get(p.number) != p.digest]
        if not todo:
            return []
        try:
            src = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise output_error(self.dest, exc) from exc
        try:
            return self._copy_and_check(src, fd, todo)
        finally:
            os.close(src)

    def _copy_and_check(self, src: int, fd: int, pieces: list[PieceMeta]) -> list[int]:
        staged = ContentFile(self.dest, fd)  # reads by offset; never closed through here
        bad = []
        for piece in pieces:
            self._checked.pop(piece.number, None)  # its staged bytes are about to change
            buffer = self._buffer_for(piece)
            try:
                ended = not _copy_range(src, fd, piece.offset, piece.length, buffer)
            except OSError as exc:
                raise output_error(self.dest, exc) from exc
            if not ended and staged.digest_at(piece.offset, piece.length, buffer) == piece.digest:
                self._checked[piece.number] = piece.digest
            else:
                bad.append(piece.number)
        return bad

    def _buffer_for(self, piece: PieceMeta) -> bytearray:
        wanted = max(1, min(piece.length, _BUFFER))  # grown once: small files, small buffer
        if len(self._buffer) < wanted:
            self._buffer = bytearray(wanted)
        return self._buffer

    def _link(self, fd: int) -> None:
        """Put the unnamed file at ``dest`` through ``/proc``: ``linkat`` straight there (fails
        if a file appeared meanwhile), or with ``overwrite`` at a hidden name first, renamed
        over ``dest``. ``StagingUnavailable`` where linking an unnamed file is refused."""
        directory = os.open(self.dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        name = temp_path(self.dest).name if self._overwrite else self.dest.name
        try:  # a dir fd makes ``os.link`` call ``linkat``, which can follow the /proc link
            os.link(f"{_PROC_FDS}/{fd}", name, dst_dir_fd=directory, follow_symlinks=True)
        except OSError as exc:
            if exc.errno in _LINK_REFUSED:
                raise StagingUnavailable(str(self.dest), exc.strerror or str(exc)) from exc
            raise output_error(self.dest, exc) from exc
        finally:
            os.close(directory)
        if self._overwrite:
            hidden = self.dest.parent / name
            try:
                commit(hidden, self.dest, overwrite=True)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(hidden)

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError("the staged output was discarded")
        return self._fd


def _missing_directories(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, outermost first."""
    missing: list[Path] = []
    while not directory.exists() and directory != directory.parent:
        missing.insert(0, directory)
        directory = directory.parent
    return missing


def _remove_empty(made: tuple[Path, ...]) -> None:
    for directory in reversed(made):  # innermost first; one that is not empty stays
        with contextlib.suppress(OSError):
            directory.rmdir()


def _copy_range(src: int, dst: int, offset: int, length: int, buffer: bytearray) -> bool:
    """``length`` bytes at ``offset`` from ``src`` to the same offset of ``dst``; False if
    ``src`` ends first (the task's file was cut: its origin changed, or it failed). Where
    ``copy_file_range`` cannot, or stops early (some FUSE file systems), ``pread`` and
    ``pwrite`` through ``buffer`` go on and find the real end."""
    done = 0
    try:
        while done < length:
            copied = os.copy_file_range(src, dst, length - done, offset + done, offset + done)
            if copied == 0:
                break
            done += copied
    except OSError as exc:
        if exc.errno not in _COPY_FALLBACK:
            raise
    return done == length or _copy_through(src, dst, offset + done, length - done, buffer)


def _copy_through(src: int, dst: int, offset: int, length: int, buffer: bytearray) -> bool:
    view, end = memoryview(buffer), offset + length
    while offset < end:
        got = os.preadv(src, [view[: min(len(view), end - offset)]], offset)
        if got == 0:
            return False
        written = 0
        while written < got:
            written += os.pwrite(dst, view[written:got], offset + written)
        offset += got
    return True
