"""``Store``: the local cache of tasks, shared by dfget and dfdaemon on one machine.

One root directory (``config.paths.store_dir``), laid out as described in ``content.py``: a
SQLite metadata file and one sparse content file per task. Several threads and several
processes may use one root at once; ``flock`` pins keep an open task from being evicted and a
``store.lock`` serialises task creation against eviction (see ``content.py``).

``open_task`` reads like its steps: validate -> (under the store lock) make room by age, quota
and free space, or refuse (``admission.py``) -> open or create the content file -> record the
task -> pin it -> (outside the lock) check the recorded pieces -> settle the state.

What is re-verified when: a task that *succeeded* and whose content file still has the
fingerprint recorded when all its pieces were last verified (size, mtime, inode, device; see
``content.py``) is trusted as it is, and nothing is read: a cache hit costs a few system calls.
Every other task is re-verified (each piece re-read and re-hashed: one lost to a crash, a
power cut or a damaged disk is dropped and fetched again, not served; ~0.4 s per GiB from tmpfs
here); a file a changed output shares is copied first (``shared_content.py``). A succeeded task
still complete after re-verification gets a fresh fingerprint, so only the first open after a
change pays. ``mark_succeeded`` records one too; a piece write or drop or a state change away
from succeeded clears it. A task this ``Store`` already has open (the daemon's engine writing
it while its piece server serves it) is not re-read: the open handle verified what was there
when it opened, and every piece recorded since was hashed as written. Such handles share one
in-memory view of the task's recorded pieces (``piece_index.py``), loaded once per opening
and kept current by every record and drop this ``Store`` makes, delivery's included.

The trade-off: the fingerprint trusts the mtime. Bytes changed in place with the size, inode
and mtime kept (``os.utime``/``touch -d`` back to the old time, or bit rot below the file
system) are *not* noticed when a succeeded task is reopened; a peer still rejects such a piece
by its digest, and ``deliver`` re-hashes every piece it hands out (``verification.py``), so
they never reach a local user either. Content files are not fsynced: after a power cut the
fast path trusts the file system not to keep a newer mtime without the bytes written before
it. ``remove_task`` forces a fresh download.

Delivery hard-links the content file to the output where it can (``shared_content.py``, with
what that obliges the store to), else copies (``deliver_staged``: made as the task filled).

Metadata never holds secrets: the URL given to ``open_task`` must already be redacted (the
caller's ``SourceUrl.redacted()``), and is scrubbed again of userinfo and signature or token
query parameters before it is recorded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from damselfly.core.errors import StorageError
from damselfly.core.redact import scrub_url
from damselfly.storage.admission import Admission
from damselfly.storage.content import (
    ContentFile,
    ContentLayout,
    StoreLock,
    make_store_dirs,
    validate_lengths,
    validate_task_id,
)
from damselfly.storage.gc import GarbageCollector
from damselfly.storage.metadata import MetadataStore, PieceMeta, TaskMeta, TaskState
from damselfly.storage.output import DeliveryMethod, deliver_file
from damselfly.storage.piece_index import PieceIndex
from damselfly.storage.shared_content import LinkRaced, linked_check, may_link, unshared
from damselfly.storage.space import DiskSpace, space_reserve
from damselfly.storage.sqlite_metadata import SqliteMetadataStore
from damselfly.storage.staging import StagedOutput
from damselfly.storage.task_storage import TaskStorage
from damselfly.storage.verification import (
    CorruptContentError,
    bad_pieces_in,
    check_deliverable,
    check_pieces,
    drop_pieces,
)

__all__ = ["DeliveryMethod", "Store", "TaskStorage"]

logger = logging.getLogger(__name__)


class Store:
    def __init__(
        self,
        root: Path,
        *,
        quota_bytes: int | None = None,
        max_age_seconds: float | None = None,
        metadata: MetadataStore | None = None,
    ) -> None:
        if quota_bytes is not None and quota_bytes < 0:
            raise ValueError(f"quota must be >= 0 bytes, got {quota_bytes}")
        self.root = root
        self.quota_bytes = quota_bytes
        self._layout = ContentLayout(root)
        make_store_dirs(self._layout.content_dir)
        reserve = space_reserve(root)
        self._owns_metadata = metadata is None
        self._metadata = (
            metadata
            if metadata is not None
            else SqliteMetadataStore(root / "metadata.db", reserve=reserve)
        )
        self._gc = GarbageCollector(self._layout, self._metadata)
        self._space = DiskSpace(self._layout, reserve)
        self._admission = Admission(
            root,
            self._gc,
            self._space,
            reserve,
            quota_bytes=quota_bytes,
            max_age_seconds=max_age_seconds,
        )
        self._store_lock = StoreLock(root / "store.lock")
        self._pins: Counter[str] = Counter()
        self._indexes: dict[str, PieceIndex] = {}  # per pinned task: its recorded pieces
        self._pins_lock = threading.Lock()
        self._open_tasks: weakref.WeakSet[TaskStorage] = weakref.WeakSet()
        self._closed = False

    # -- tasks ---------------------------------------------------------------------------------

    def open_task(
        self,
        task_id: str,
        *,
        url: str,
        content_length: int,
        piece_length: int,
        content_digest: str | None = None,
    ) -> TaskStorage:
        """Create or resume a task; see the module docstring for the steps."""
        self._check_open()
        validate_task_id(task_id)
        validate_lengths(content_length, piece_length)
        with self._store_lock:
            self._admission.admit(task_id, content_length, self._pinned() | {task_id})
            content, kept_size, replaced = self._open_content(task_id, content_length, piece_length)
            try:
                self._record(task_id, url, content_length, piece_length, content_digest)
            except BaseException:
                content.close()
                raise
            already_open = self._pin(task_id) > 1
            index = self._index(task_id)
        task = TaskStorage(
            task_id,
            content_length=content_length,
            piece_length=piece_length,
            content=content,
            metadata=self._metadata,
            index=index,
            on_close=lambda: self._unpin(task_id),
        )
        try:
            if replaced:  # a private copy of a file an output shares: what it holds is unknown
                index.forget_writes()
            if not already_open or replaced:
                check_pieces(self._metadata, task, content, kept_size)
                task.refresh()  # the re-verification dropped pieces from the store
            self._settle_state(task)
        except BaseException:
            task.close()
            raise
        with self._pins_lock:
            self._open_tasks.add(task)
        return task

    def get_task(self, task_id: str) -> TaskMeta | None:
        return self._metadata.get_task(task_id)

    def list_tasks(self) -> list[TaskMeta]:
        """Every task, least recently accessed first."""
        return self._metadata.tasks_by_access()

    def held_pieces(self, task_id: str) -> frozenset[int]:
        """Numbers of the recorded pieces, as recorded: cheap, read-only, not re-verified
        (for announcing what this store holds; serving checks again)."""
        return frozenset(piece.number for piece in self.recorded_pieces(task_id))

    def recorded_pieces(self, task_id: str) -> list[PieceMeta]:
        """The recorded pieces with their digests, by number; not re-verified."""
        self._check_open()
        return self._metadata.pieces(task_id)

    def content_path(self, task_id: str) -> Path:
        return self._layout.path_for(task_id)

    def remove_task(self, task_id: str) -> bool:
        """Delete one task now; False if it is open somewhere (or unknown)."""
        with self._store_lock:
            if task_id in self._pinned():
                return False
            return self._gc.delete(task_id, with_row=True)

    # -- space ---------------------------------------------------------------------------------

    def usage_bytes(self) -> int:
        """Logical size of this store's own content files (see ``gc.py`` for why logical)."""
        return self._gc.usage_bytes()

    def free_bytes(self) -> int:
        """Free space on the store's file system, as an unprivileged writer sees it."""
        return self._space.free_bytes()

    def collect_garbage(self, needed_bytes: int = 0) -> int:
        """Remove orphans, expire old tasks and evict LRU tasks not open until
        ``needed_bytes`` are freed and usage is within the quota; returns the bytes freed."""
        with self._store_lock:
            return self._admission.collect(needed_bytes, self._pinned())

    # -- output --------------------------------------------------------------------------------

    def deliver(
        self,
        task_id: str,
        dest: Path,
        *,
        overwrite: bool = False,
        hard_link: bool = False,
        share: bool = False,
    ) -> DeliveryMethod:
        """Put a complete task's bytes at ``dest`` atomically (``output.deliver_file``): with
        ``hard_link`` the content file itself if ``may_link`` (``shared_content.py``), else a
        copy; every piece re-hashed there first: if some fail, ``CorruptContentError`` (they
        are dropped). Blocking: call it from a worker thread."""
        with self._delivering(task_id) as (_, content, pieces):
            verify = functools.partial(self._verify, task_id, pieces)
            names = content.links()
            link = hard_link and may_link(content, dest, names, share=share)
            check = linked_check(content, names, share=share, verify=verify)
            try:
                return deliver_file(
                    content.path, dest, overwrite=overwrite, hard_link=link, verify=check
                )
            except LinkRaced:
                return deliver_file(
                    content.path, dest, overwrite=overwrite, hard_link=False, verify=verify
                )

    def deliver_staged(self, task_id: str, staged: StagedOutput) -> DeliveryMethod:
        """``deliver`` to an output staged while the task filled (``staging.py``): what is
        not staged and checked there yet is, then it appears at ``staged.dest``."""
        with self._delivering(task_id) as (meta, content, pieces):
            bad = staged.finish(task_id, content.path, pieces, meta.content_length)
            if bad:
                self._reject(task_id, bad)
            return DeliveryMethod.COPY

    @contextlib.contextmanager
    def _delivering(self, task_id: str) -> Iterator[tuple[TaskMeta, ContentFile, list[PieceMeta]]]:
        """A deliverable task's record and content file, pinned while it is delivered."""
        with self._store_lock:
            meta = self._metadata.get_task(task_id)
            if meta is None:
                raise StorageError(f"task {task_id}: not in the store")
            content = ContentFile.open(self._layout.path_for(task_id), create=False)
            self._pin(task_id)
        try:
            pieces = self._metadata.pieces(task_id)
            check_deliverable(meta, pieces, content)
            yield meta, content, pieces
            self._metadata.task_accessed(task_id)
        finally:
            content.close()
            self._unpin(task_id)

    def _verify(self, task_id: str, pieces: list[PieceMeta], staged: Path) -> None:
        bad = bad_pieces_in(staged, pieces)
        if bad:
            self._reject(task_id, bad)

    def _reject(self, task_id: str, bad: list[int]) -> NoReturn:
        """Pieces whose bytes failed at delivery: dropped, and ``CorruptContentError``."""
        drop_pieces(self._metadata, task_id, bad, "verification before delivery")
        with self._pins_lock:
            index = self._indexes.get(task_id)
        if index is not None:  # an open handle (the daemon's) must not serve them
            for number in bad:
                index.dropped(number)
        raise CorruptContentError(task_id, bad)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every task still open, then the metadata store if this store made it."""
        if self._closed:
            return
        self._closed = True
        with self._pins_lock:
            still_open = list(self._open_tasks)
        for task in still_open:
            task.close()
        if self._owns_metadata:
            self._metadata.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- open_task steps -----------------------------------------------------------------------

    def _open_content(
        self, task_id: str, content_length: int, piece_length: int
    ) -> tuple[ContentFile, int, bool]:
        """Open the content file at its full length; return it, the length it had, and whether
        it replaced a file an output shares (``shared_content.unshared``)."""
        meta = self._metadata.get_task(task_id)
        if meta is None or (meta.content_length, meta.piece_length) != (
            content_length,
            piece_length,
        ):
            self._discard(task_id, meta)
        content = ContentFile.open(self._layout.path_for(task_id), create=True)
        content, replaced = unshared(content, meta, self._metadata)  # never write a user's file
        try:
            kept_size = content.size()
            if kept_size != content_length:
                content.resize(content_length)
        except BaseException:
            content.close()
            raise
        return content, kept_size, replaced

    def _discard(self, task_id: str, meta: TaskMeta | None) -> None:
        """Forget old data whose lengths differ (or a file with no record), never in place:
        the old file is unlinked, so a hard-linked output made from it keeps its bytes."""
        path = self._layout.path_for(task_id)
        if os.path.lexists(path) and not self._delete_unpinned(task_id):
            raise StorageError(f"task {task_id}: open elsewhere with other lengths; close it first")
        self._metadata.task_deleted(task_id)
        if meta is not None:
            logger.info("task %s: lengths changed, old data discarded", task_id)

    def _delete_unpinned(self, task_id: str) -> bool:
        return task_id not in self._pinned() and self._gc.delete(task_id, with_row=True)

    def _record(
        self,
        task_id: str,
        url: str,
        content_length: int,
        piece_length: int,
        content_digest: str | None,
    ) -> None:
        now, state = time.time(), TaskState.PENDING
        scrubbed = scrub_url(url)
        task = TaskMeta(
            task_id, scrubbed, content_length, piece_length, state, content_digest, now, now
        )
        self._metadata.task_registered(task)
        self._metadata.task_accessed(task_id)

    def _settle_state(self, task: TaskStorage) -> None:
        meta = self._metadata.get_task(task.task_id)
        if meta is not None and meta.state is TaskState.SUCCEEDED and task.is_complete:
            return
        self._metadata.task_started(task.task_id)

    # -- pins ----------------------------------------------------------------------------------

    def _pin(self, task_id: str) -> int:
        """Pin the task; returns how many handles of this store now hold it."""
        with self._pins_lock:
            self._pins[task_id] += 1
            return self._pins[task_id]

    def _unpin(self, task_id: str) -> None:
        with self._pins_lock:
            self._pins[task_id] -= 1
            if self._pins[task_id] <= 0:
                del self._pins[task_id]
                self._indexes.pop(task_id, None)

    def _index(self, task_id: str) -> PieceIndex:
        """The pinned task's shared view of its recorded pieces, loaded if it has none."""
        with self._pins_lock:
            index = self._indexes.get(task_id)
        if index is None:
            index = PieceIndex(self._metadata.pieces(task_id))
            with self._pins_lock:
                index = self._indexes.setdefault(task_id, index)
        return index

    def _pinned(self) -> frozenset[str]:
        with self._pins_lock:
            return frozenset(self._pins)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"store {self.root} is closed")
