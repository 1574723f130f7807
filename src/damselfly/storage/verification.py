"""When stored bytes are re-hashed: on opening a task, and on every delivery.

Opening (``check_pieces``): a succeeded task whose content file still has its verified
fingerprint (size, mtime, inode, device; ``content.py``) is trusted without reading it, so a
cache hit that only needs to *serve* pieces costs a few system calls (a peer checks every
piece it receives against its digest anyway). Any other task has each recorded piece re-read
and re-hashed, and the pieces that fail are dropped.

Delivery (``bad_pieces``): the fingerprint trusts the mtime, so bytes changed in place with
the mtime put back (``os.utime``, ``touch -d``, bit rot below the file system) would pass the
open. So ``Store.deliver`` hashes every piece *of the staged output* (the copy, reflink or hard
link in the output's directory, before it is renamed into place) against the recorded
digests: what is handed out is what was verified, whatever the store's file did meanwhile.
Pieces that fail are dropped from the store and ``CorruptContentError`` names them; the
download layer fetches them again and delivers once more. Cost: one read of the file (the
copy's pages are in the cache), measured in ``docs/reliability.md``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from damselfly.core.errors import StorageError
from damselfly.core.pieces import piece_at, piece_count
from damselfly.storage.content import ContentFile
from damselfly.storage.metadata import MetadataStore, PieceMeta, TaskMeta, TaskState
from damselfly.storage.task_storage import TaskStorage

logger = logging.getLogger(__name__)

HASH_THREADS = min(4, os.cpu_count() or 1)
PARALLEL_FROM_BYTES = 32 << 20  # below this, threads cost more than they save


class CorruptContentError(StorageError):
    """Stored pieces no longer match their digests (found while delivering)."""

    def __init__(self, task_id: str, pieces: list[int]) -> None:
        super().__init__(
            f"task {task_id}: {len(pieces)} stored pieces failed verification: {pieces[:10]}"
        )
        self.task_id = task_id
        self.pieces = pieces


def check_pieces(
    metadata: MetadataStore, task: TaskStorage, content: ContentFile, kept_size: int
) -> None:
    """Trust a matching verified fingerprint; else re-verify, and vouch afresh if the
    succeeded task is still complete and its file did not change meanwhile."""
    meta = metadata.get_task(task.task_id)
    succeeded = meta is not None and meta.state is TaskState.SUCCEEDED
    if succeeded and _fingerprint_holds(metadata, task, content, kept_size):
        logger.debug("task %s: unchanged since verified; pieces not re-read", task.task_id)
        return
    stamped = content.stamp_fingerprint() if succeeded else None
    _reverify(metadata, task, content, kept_size)
    if stamped is not None and task.is_complete and content.fingerprint() == stamped:
        metadata.task_verified(task.task_id, stamped)


def check_deliverable(meta: TaskMeta, pieces: list[PieceMeta], content: ContentFile) -> None:
    """A task is delivered only with every piece recorded and its file at full length."""
    total = piece_count(meta.content_length, meta.piece_length)
    if len(pieces) != total:
        raise StorageError(f"task {meta.task_id}: not complete ({len(pieces)} of {total} pieces)")
    if content.size() != meta.content_length:
        raise StorageError(f"task {meta.task_id}: content file has the wrong length")


def bad_pieces(content: ContentFile, pieces: Iterable[PieceMeta]) -> list[int]:
    """Numbers of the pieces whose bytes in ``content`` do not match their digests. Pieces
    are hashed on up to ``HASH_THREADS`` threads (reads and BLAKE3 release the GIL): the
    same CPU, half the wait on two cores for what a delivery re-hashes at its end."""
    todo = list(pieces)
    workers = min(HASH_THREADS, len(todo))
    if workers <= 1 or sum(p.length for p in todo) < PARALLEL_FROM_BYTES:
        return _bad_in(content, todo)
    shares = [todo[i::workers] for i in range(workers)]  # one job per thread, however many
    with ThreadPoolExecutor(workers, thread_name_prefix="verify") as pool:
        found = pool.map(functools.partial(_bad_in, content), shares)
        return sorted(number for bad in found for number in bad)


def _bad_in(content: ContentFile, pieces: list[PieceMeta]) -> list[int]:
    return [p.number for p in pieces if content.digest_at(p.offset, p.length) != p.digest]


def bad_pieces_in(path: Path, pieces: Iterable[PieceMeta]) -> list[int]:
    """``bad_pieces`` of the file at ``path`` (a staged output)."""
    output = ContentFile.open_read_only(path)
    try:
        return bad_pieces(output, pieces)
    finally:
        output.close()


def drop_pieces(metadata: MetadataStore, task_id: str, numbers: list[int], why: str) -> None:
    for number in numbers:
        metadata.piece_dropped(task_id, number)
    if numbers:
        logger.warning(
            "task %s: %d recorded pieces failed %s and were dropped: %s",
            task_id,
            len(numbers),
            why,
            numbers[:20],
        )


def _fingerprint_holds(
    metadata: MetadataStore, task: TaskStorage, content: ContentFile, kept_size: int
) -> bool:
    if kept_size != task.content_length:
        return False  # cut short (then re-extended): never trusted
    return metadata.verified_fingerprint(task.task_id) == content.fingerprint()


def _reverify(
    metadata: MetadataStore, task: TaskStorage, content: ContentFile, kept_size: int
) -> None:
    """Drop recorded pieces whose bytes are missing, misplaced or do not match."""
    dropped = [
        piece.number
        for piece in metadata.pieces(task.task_id)
        if not _piece_intact(piece, task, content, kept_size)
    ]
    drop_pieces(metadata, task.task_id, dropped, "re-verification")


def _piece_intact(piece: PieceMeta, task: TaskStorage, content: ContentFile, kept: int) -> bool:
    try:
        expected = piece_at(piece.number, task.content_length, task.piece_length)
    except IndexError:
        return False
    if (piece.offset, piece.length) != (expected.offset, expected.length):
        return False
    if piece.offset + piece.length > kept:
        return False  # the file was cut short: these bytes are gone
    return content.digest_at(piece.offset, piece.length) == piece.digest
