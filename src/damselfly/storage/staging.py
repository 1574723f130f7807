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

Most pieces need no copy at all: a ``PieceStream`` writing a piece into the content file
writes the same bytes here too, from the buffer it has just hashed (``tap_part``,
``tap_end``; the staged output is one of the task's output taps inside
``StagedDelivery.tapping``; only where a copy would move every byte anyway, see
``file_systems.py``). The first stream of a piece not checked here owns its range until it
ends or is dropped; only that stream's parts, in order from the piece's start, are written,
and only if it wrote every byte (and they matched the digest it expected, for a piece from a
parent) is the piece checked, under the digest of the bytes it hashed (delivery compares that
with the recorded one, as for a copy). Anyone else's parts are ignored, and a copy
(``copy_pieces``, ``finish``) takes a piece's range back from its owner. So a piece the tap
wrote is written here from memory, with no copy out of the content file, no re-read and no
second hash; a piece it did not write is copied and checked as before.

So the guarantee is the one ``deliver_file`` gives: every byte handed out was hashed where it
was handed out, or written there from the very buffer that was hashed, against the piece
digests, whatever the store's file did meanwhile.

Where the file system has no ``O_TMPFILE`` (or the output's directory refuses it) ``open``
returns None and the download delivers at the end as before. Missing directories on the way to
the output are made by ``open`` and removed by ``discard`` unless the file was delivered. One
lock serialises the copies, the tapped writes, ``finish`` and ``discard``: the descriptor is
never closed under a write running in a thread, and nothing is written after ``finish``. A
piece the content file ends before (cut: the origin changed, the task failed) is not checked;
``finish`` returns it as bad if it is still recorded then.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

from damselfly.core.errors import DamselflyError, OutputError
from damselfly.core.pieces import Piece
from damselfly.storage.content import ContentFile
from damselfly.storage.file_systems import copies_bytes
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

log = logging.getLogger(__name__)


class StagingUnavailable(OutputError):
    """The staged file cannot be put at the output here (no ``linkat`` through ``/proc`` in
    this sandbox, the output's directory gone): deliver the way that needs neither."""


class _Owner:
    """The stream writing a piece's staged range (while it lives), and where its next byte
    goes. A stream dropped before its end (cancelled, its parent gone) owns nothing."""

    __slots__ = ("next", "writer")

    def __init__(self, writer: object, start: int) -> None:
        self.writer = weakref.ref(writer)
        self.next = start

    def is_(self, writer: object) -> bool:
        return self.writer() is writer

    def gone(self) -> bool:
        return self.writer() is None


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
        self._owners: dict[int, _Owner] = {}  # pieces a stream is writing here (``tap_part``)
        self._tap_failed = False  # a tapped write failed: the rest is copied (and fails there)
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

    def copies_bytes_from(self, source: Path) -> bool:
        """Would copying from ``source`` (the store's content file) to here move every byte
        (``file_systems.py``)? Only then are pieces written here as they arrive."""
        with self._lock:
            if self._fd is None:
                return False
            output_dev = os.fstat(self._fd).st_dev
        try:
            store_dev = os.stat(source).st_dev
        except OSError:
            return False
        return copies_bytes(store_dev, output_dev)

    def checked(self, task_id: str) -> frozenset[int]:
        """Pieces of ``task_id`` whose staged bytes are known to hash to a digest (copied
        and hashed here, or written from a buffer hashed as it came); delivery still compares
        that digest with the recorded one."""
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

    def tap_part(
        self, task_id: str, writer: object, piece: Piece, offset: int, chunks: Sequence[memoryview]
    ) -> None:
        """Bytes of ``piece`` that ``writer`` (a ``PieceStream``) has just hashed, written at
        ``offset`` here too if ``writer`` owns the piece's range (see the module docstring)."""
        with self._lock:
            if self._fd is None or self._tap_failed:
                return
            self._follow(task_id)
            owner = self._owners.get(piece.number)
            if owner is None or owner.gone():
                if piece.number in self._checked or offset != piece.offset:
                    return  # staged already, or a stream that did not start here
                owner = self._owners[piece.number] = _Owner(writer, offset)
            elif not owner.is_(writer):
                return
            if offset != owner.next:  # a part skipped: never a piece with a hole checked
                del self._owners[piece.number]
                return
            try:
                ContentFile(self.dest, self._fd).write_chunks_at(offset, chunks)
            except DamselflyError as exc:  # the copy at the end meets it again, and says so
                log.debug("%s: writing piece %d as received: %s", self.dest, piece.number, exc)
                del self._owners[piece.number]
                self._tap_failed = True
                return
            owner.next = offset + sum(chunk.nbytes for chunk in chunks)

    def tap_end(self, task_id: str, writer: object, piece: Piece, digest: str | None) -> None:
        """``writer`` hashed all of ``piece`` as ``digest`` (None: not the piece's bytes): if
        it owned the piece's range and wrote every byte of it here, the staged range holds
        exactly those bytes."""
        with self._lock:
            owner = self._owners.get(piece.number)
            if owner is None or not owner.is_(writer) or task_id != self._task_id:
                return
            del self._owners[piece.number]
            if digest is not None and owner.next == piece.offset + piece.length:
                self._checked[piece.number] = digest

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
        self._follow(task_id)
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

    def _follow(self, task_id: str) -> None:
        """Another task id: the origin changed and the download started again."""
        if task_id != self._task_id:
            self._task_id, self._checked, self._owners = task_id, {}, {}

    def _copy_and_check(self, src: int, fd: int, pieces: list[PieceMeta]) -> list[int]:
        staged = ContentFile(self.dest, fd)  # reads by offset; never closed through here
        bad = []
        for piece in pieces:
            self._checked.pop(piece.number, None)  # its staged bytes are about to change
            self._owners.pop(piece.number, None)  # and no stream writes them from now on
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
