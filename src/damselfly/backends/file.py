"""``FileBackend``: file:// URLs on the local file system.

Reads run in a worker thread (``asyncio.to_thread``) in ``READ_CHUNK_LENGTH`` chunks, so a slow
disk never blocks the event loop. ``list`` walks a directory recursively and returns regular
files only; a symlink is followed only when its target stays inside the listed directory
(a link to ``/etc/shadow`` inside a model folder is skipped, not served), and symlinked
directories are not descended into (no loops).

OS errors become backend errors here: missing -> ``SourceNotFoundError``, permission denied ->
``SourceAuthError`` (status 403), a directory where a file is expected ->
``SourceProtocolError``, any other ``OSError`` -> ``BackendError`` with the OS message.
"""

from __future__ import annotations

import asyncio
import os
import stat as stat_module
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO

from damselfly.backends.base import Entry, ObjectStat, RequestOptions, exists_by_stat
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceChangedError,
    SourceNotFoundError,
    SourceProtocolError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import FileUrl, SourceUrl

READ_CHUNK_LENGTH = 4 * 1024 * 1024


class FileBackend:
    """The ``Backend`` for file:// URLs."""

    async def aclose(self) -> None:
        return None

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        file_url = _require_file(url)
        info = await asyncio.to_thread(_stat_file, file_url)
        return ObjectStat(
            content_length=info.st_size,
            supports_ranges=True,
            etag=_etag(info),
            last_modified=formatdate(info.st_mtime, usegmt=True),
        )

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return await exists_by_stat(self, url, options)

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        file_url = _require_file(url)
        handle = await asyncio.to_thread(_open, file_url)
        try:
            _check_version(file_url, os.fstat(handle.fileno()), options)
            start = 0 if byte_range is None else byte_range.start
            length = None if byte_range is None else byte_range.length
            async for chunk in _read(handle, file_url, start, length):
                yield chunk
        finally:
            handle.close()

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        file_url = _require_file(url)
        return await asyncio.to_thread(_list_directory, file_url)


def _etag(info: os.stat_result) -> str:
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'


def _check_version(url: FileUrl, info: os.stat_result, options: RequestOptions) -> None:
    """A file rewritten since ``stat`` (new mtime or size) is another version."""
    expected = options.expected
    change = expected.change_from(_etag(info), None, info.st_size) if expected else None
    if change is not None:
        raise SourceChangedError(url.redacted(), change)


def _require_file(url: SourceUrl) -> FileUrl:
    if not isinstance(url, FileUrl):
        raise SourceProtocolError(url.redacted(), "not a file:// URL")
    return url


def _os_error(url: FileUrl, exc: OSError) -> BackendError:
    reason = exc.strerror or exc.__class__.__name__
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return SourceNotFoundError(url.redacted(), 404, "no such file")
    if isinstance(exc, PermissionError):
        return SourceAuthError(url.redacted(), 403, "permission denied")
    if isinstance(exc, IsADirectoryError):
        return SourceProtocolError(url.redacted(), "is a directory (use a recursive download)")
    return BackendError(url.redacted(), reason)


def _stat_file(url: FileUrl) -> os.stat_result:
    try:
        info = os.stat(url.path)
    except OSError as exc:
        raise _os_error(url, exc) from exc
    if stat_module.S_ISDIR(info.st_mode):
        raise SourceProtocolError(url.redacted(), "is a directory (use a recursive download)")
    if not stat_module.S_ISREG(info.st_mode):
        raise SourceProtocolError(url.redacted(), "not a regular file")
    return info


def _open(url: FileUrl) -> BinaryIO:
    _stat_file(url)  # a directory or a FIFO must fail here, not block in open()
    try:
        return open(url.path, "rb")
    except OSError as exc:
        raise _os_error(url, exc) from exc


async def _read(
    handle: BinaryIO, url: FileUrl, start: int, length: int | None
) -> AsyncIterator[bytes]:
    received = 0
    while length is None or received < length:
        wanted = READ_CHUNK_LENGTH if length is None else min(READ_CHUNK_LENGTH, length - received)
        chunk = await asyncio.to_thread(_read_at, handle, url, start + received, wanted)
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    if length is not None and received < length:
        reason = f"expected {length} bytes, got {received} (file is shorter than the range)"
        raise SourceProtocolError(url.redacted(), reason)


def _read_at(handle: BinaryIO, url: FileUrl, offset: int, length: int) -> bytes:
    try:
        return os.pread(handle.fileno(), length, offset)
    except OSError as exc:
        raise _os_error(url, exc) from exc


def _list_directory(url: FileUrl) -> list[Entry]:
    root = Path(url.path)
    try:
        info = os.stat(root)
    except OSError as exc:
        raise _os_error(url, exc) from exc
    if not stat_module.S_ISDIR(info.st_mode):
        raise SourceProtocolError(url.redacted(), "not a directory (nothing to list)")
    real_root = root.resolve()
    entries = [
        Entry(url=FileUrl(str(path)), path=relative, content_length=size)
        for path, relative, size in _walk(root, real_root)
    ]
    return sorted(entries, key=lambda entry: entry.path)


def _walk(root: Path, real_root: Path) -> Iterator[tuple[Path, str, int]]:
    """(path, '/'-relative path, size) of every regular file below ``root``."""
    for directory, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            path = Path(directory) / name
            size = _regular_file_size(path, real_root)
            if size is not None:
                yield path, path.relative_to(root).as_posix(), size


def _regular_file_size(path: Path, real_root: Path) -> int | None:
    """The size of a regular file (or a symlink to one inside ``real_root``), else ``None``."""
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(real_root):
            return None
        info = path.stat()
    except OSError:
        return None  # dangling link, raced deletion, unreadable: not listable
    return info.st_size if stat_module.S_ISREG(info.st_mode) else None
