"""Atomic delivery of a finished content file to the user's output path.

Rules (what a user of ``dfget -O`` can rely on):

- ``dest`` never holds a half-written file: the bytes go to a hidden temp file in ``dest``'s
  directory (``.<name>.damselfly-<random>.tmp``), are fsynced, then appear at ``dest`` in one
  rename or link. Every failure path, ``KeyboardInterrupt`` and ``CancelledError`` included,
  removes the temp file.
- Checked up front: ``dest`` exists and not ``overwrite`` -> "already exists (use
  --overwrite)"; ``dest`` is a directory -> "is a directory"; a parent component is a file ->
  "not a directory"; a missing parent is created (``mkdir -p``); a parent we cannot write
  (permissions, read-only mount) -> "permission denied". All are ``OutputError``.
- Without ``overwrite`` the last step is ``link(tmp, dest)``, which fails if a file appeared at
  ``dest`` meanwhile, so a concurrent writer's file is never clobbered. With ``overwrite`` it is
  ``rename(tmp, dest)``.
- With ``hard_link`` the temp file is a hard link to the content file: no copy. It falls back
  to a copy (``copy_file_range``, else ``sendfile``) across filesystems (EXDEV) or where links
  are refused. A hard-linked output shares its inode with the store's content file, which is
  why the store never writes into or cuts a file with more than one name
  (``shared_content.py``).
- ``verify``, if given, is called with the staged temp file (link or copy) before it appears
  at ``dest``; if it raises, nothing is delivered (``Store.deliver`` re-hashes every piece
  there, see ``verification.py``).
- Copies are first tried as a reflink (``FICLONE``: copy-on-write, no bytes moved) where the
  file system can (btrfs, XFS with reflink, bcachefs), else ``copy_file_range`` copies in the
  kernel (``sendfile`` as a last resort). A copy or reflink shares nothing writable with the
  store: rot or a write in the store never reaches a delivered file, nor the other way round.
- ENOSPC/EDQUOT during the copy -> ``DiskFullError`` naming ``dest``, nothing left behind.
- The output's mode is 0644 minus the process umask (also for a hard link, whose content file
  lives in a 0700 directory, so widening its mode exposes nothing).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from damselfly.core.errors import OutputError, StorageError
from damselfly.storage.content import disk_full

OUTPUT_MODE = 0o644
_LINK_FALLBACK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_COPY_FALLBACK = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_COPY_CHUNK = 1 << 30
_FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h


class DeliveryMethod(enum.StrEnum):
    HARD_LINK = "hard_link"
    COPY = "copy"


def deliver_file(
    src: Path,
    dest: Path,
    *,
    overwrite: bool,
    hard_link: bool,
    verify: Callable[[Path], None] | None = None,
) -> DeliveryMethod:
    """Make ``dest`` hold the bytes of ``src``, atomically; see the module docstring."""
    check_destination(dest, overwrite=overwrite)
    tmp = temp_path(dest)
    try:
        method = _stage(src, tmp, dest, hard_link=hard_link)
        if verify is not None:
            verify(tmp)
        commit(tmp, dest, overwrite=overwrite)
    finally:
        with contextlib.suppress(OSError):  # never mask the error that brought us here
            os.unlink(tmp)
    fsync_dir(dest.parent)
    return method


def temp_path(dest: Path) -> Path:
    """A hidden name beside ``dest`` for bytes on their way there."""
    return dest.parent / f".{dest.name}.damselfly-{secrets.token_hex(6)}.tmp"


def check_destination(dest: Path, *, overwrite: bool) -> None:
    """Raise ``OutputError`` if ``dest`` cannot receive a file; create missing parents."""
    if dest.is_dir():
        raise OutputError(str(dest), "is a directory")
    if os.path.lexists(dest) and not overwrite:
        raise OutputError(str(dest), "already exists (use --overwrite)")
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # the parent exists and is not a directory
        raise OutputError(str(dest), "not a directory") from exc
    except OSError as exc:
        raise output_error(dest, exc) from exc
    if not parent.is_dir():
        raise OutputError(str(dest), "not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(str(dest), "permission denied")


def _stage(src: Path, tmp: Path, dest: Path, *, hard_link: bool) -> DeliveryMethod:
    """Put the bytes at ``tmp``: a hard link if allowed and possible, else a copy."""
    if hard_link:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in _LINK_FALLBACK:
                raise output_error(dest, exc) from exc
        else:
            _chmod(tmp, dest)
            return DeliveryMethod.HARD_LINK
    _copy(src, tmp, dest)
    return DeliveryMethod.COPY


def _copy(src: Path, tmp: Path, dest: Path) -> None:
    try:
        copy_file(src, tmp, OUTPUT_MODE)
    except OSError as exc:
        raise output_error(dest, exc) from exc


def copy_file(src: Path, tmp: Path, mode: int) -> None:
    """Copy ``src`` to the new file ``tmp`` (a reflink where the file system can), fsynced;
    ``OSError`` as the system calls raise it."""
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        tmp_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            if not _reflink(src_fd, tmp_fd):
                _copy_fd(src_fd, tmp_fd, os.fstat(src_fd).st_size)
            os.fsync(tmp_fd)
        finally:
            os.close(tmp_fd)
    finally:
        os.close(src_fd)


def _reflink(src_fd: int, dst_fd: int) -> bool:
    """Clone ``src_fd`` into the empty ``dst_fd``; False where the file system cannot."""
    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise
        return False
    return True


def _copy_fd(src_fd: int, dst_fd: int, length: int) -> None:
    """Copy ``length`` bytes in the kernel: ``copy_file_range`` (reflinks where the fs can)."""
    offset = 0
    try:
        while offset < length:
            copied = os.copy_file_range(src_fd, dst_fd, min(_COPY_CHUNK, length - offset))
            if copied == 0:
                break
            offset += copied
    except OSError as exc:
        if exc.errno not in _COPY_FALLBACK or offset:
            raise
        _sendfile(src_fd, dst_fd, length)
        return
    if offset != length:
        raise OSError(errno.EIO, f"source ended after {offset} of {length} bytes")


def _sendfile(src_fd: int, dst_fd: int, length: int) -> None:
    offset = 0
    while offset < length:
        sent = os.sendfile(dst_fd, src_fd, offset, min(_COPY_CHUNK, length - offset))
        if sent == 0:
            raise OSError(errno.EIO, f"source ended after {offset} of {length} bytes")
        offset += sent


def commit(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    try:
        if overwrite:
            os.replace(tmp, dest)  # a no-op if both already name one inode; finally cleans tmp
        else:
            _link_no_clobber(tmp, dest)
    except OSError as exc:
        raise output_error(dest, exc) from exc


def _link_no_clobber(tmp: Path, dest: Path) -> None:
    """``link(tmp, dest)`` fails with EEXIST instead of clobbering a newcomer. On filesystems
    without hard links, rename after a last check (a narrow race there, none elsewhere)."""
    try:
        os.link(tmp, dest)
    except OSError as exc:
        if exc.errno not in _LINK_FALLBACK:
            raise
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "already exists", str(dest)) from exc
        os.replace(tmp, dest)


def _chmod(tmp: Path, dest: Path) -> None:
    try:
        os.chmod(tmp, OUTPUT_MODE & ~current_umask())
    except OSError as exc:
        raise output_error(dest, exc) from exc


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, racing threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def output_error(dest: Path, exc: OSError) -> StorageError:
    code = exc.errno
    if code in _NO_SPACE:
        return disk_full(dest, exc, "writing output")
    if code in _DENIED:
        return OutputError(str(dest), "permission denied")
    if code == errno.EEXIST:
        return OutputError(str(dest), "already exists (use --overwrite)")
    if code == errno.EISDIR:
        return OutputError(str(dest), "is a directory")
    if code == errno.ENOTDIR:
        return OutputError(str(dest), "not a directory")
    return OutputError(str(dest), exc.strerror or str(exc))
