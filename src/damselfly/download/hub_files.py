"""Files of the hub layouts, written so that no reader ever sees half of one.

A file already in place is kept only when its length (and sha256, where the hub vouches for
one) match; new files and links are made under a hidden temp name and renamed; OS errors
become ``OutputError`` naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from damselfly.backends.base import Entry
from damselfly.core.errors import OutputError

HASH_CHUNK_LENGTH = 8 * 1024 * 1024


def has_length(path: Path, length: int | None) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    return path.is_file() and length is not None and stat.st_size == length


def same_sha256(path: Path, entry: Entry) -> bool:
    digest = entry.content_digest
    if digest is None:
        return True  # the hub vouches for no digest: the length is all we can check
    if digest.algorithm != "sha256":
        return False
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK_LENGTH):
                hasher.update(chunk)
    except OSError:
        return False
    return hasher.hexdigest() == digest.hex


def replace_atomically(dest: Path, make: FileMaker) -> None:
    """Create ``dest`` through a hidden temp name and one rename (readers never see half)."""
    tmp = dest.parent / f".{dest.name}.damselfly-{secrets.token_hex(6)}.tmp"
    try:
        make(tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class FileMaker(Protocol):
    def __call__(self, tmp: Path, /) -> object: ...


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise OutputError(str(path), exc.strerror or str(exc)) from exc
