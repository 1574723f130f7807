"""``StagedDelivery``: a file's output copied and checked as its pieces are recorded.

``download_file`` opens one per file it delivers by copy (not with ``--force-hard-link``):
each piece the filler records is handed to a ``StagedOutput`` (``storage/staging.py``) in a
worker thread (one for the process), a few pieces per hop, one hop at a time, so the copy and
its check run while the download waits on the network instead of all at the end. ``deliver``
waits for the hop in flight and lets the store finish the rest (``Store.deliver_staged``).
While the task fills inside ``tapping``, pieces streamed into it are written to the staged
output as they arrive, so their hop finds them checked already and copies nothing.
Where no staged output can be made (no ``O_TMPFILE`` there) the store delivers as before
(``Store.deliver``).

A full disk under the output, met on the way, is not lost: ``deliver`` raises it. Any other
failure on the way (the task's file cut because the origin changed, a piece whose staged bytes
did not match) only leaves those pieces for ``deliver`` to copy and check once more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from damselfly.core.errors import DamselflyError, DiskFullError
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.staging import StagedOutput, StagingUnavailable
from damselfly.storage.store import Store, TaskStorage

log = logging.getLogger(__name__)

BATCH = 8  # pieces per worker-thread hop: ``discard`` waits for at most one such hop
# One thread for every download's staging in the process: on the default executor the hops
# woke more of its workers, each with a malloc arena of its own (a node daemon's peak RSS in
# the standard swarm tier 83-84 -> 102-115 MiB; with this thread 83, docs/benchmarks.md).
_STAGING = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="damselfly-staging")


class StagedDelivery:
    def __init__(self, store: Store, dest: Path, *, overwrite: bool) -> None:
        self._store = store
        self._dest = dest
        self._overwrite = overwrite
        self._staged: StagedOutput | None = StagedOutput.open(dest, overwrite=overwrite)
        self._task: TaskStorage | None = None
        self._pending: list[PieceMeta] = []
        self._worker: asyncio.Task[None] | None = None
        self._failure: DiskFullError | None = None

    def piece_recorded(self, task: TaskStorage, piece: PieceMeta) -> None:
        """Queue ``piece`` of ``task`` for the staged output; call it on the event loop."""
        if self._staged is None or self._failure is not None:
            return
        if task is not self._task:
            self._task, self._pending = task, []
        self._pending.append(piece)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._copy_pending())

    @contextlib.contextmanager
    def tapping(self, task: TaskStorage) -> Iterator[None]:
        """While inside, pieces streamed into ``task`` are written to the staged output as
        they arrive (``StagedOutput.tap_part``), and need no copy when recorded; unless a
        copy from the store would clone ranges instead of moving bytes."""
        staged = self._staged
        if staged is None or not staged.copies_bytes_from(task.content_path):
            yield  # copies here clone ranges (a reflink): cheaper than writing them again
            return
        task.add_output_tap(staged)
        try:
            yield
        finally:
            task.remove_output_tap(staged)

    async def deliver(self, task_id: str) -> DeliveryMethod:
        """The complete task at the output, atomically, every piece checked there."""
        if self._staged is not None:
            self._pending.clear()  # ``finish`` stages them: wait for the hop in flight only
            await self._settle()
            if self._failure is not None:
                raise self._failure
            try:
                return await asyncio.to_thread(self._store.deliver_staged, task_id, self._staged)
            except StagingUnavailable as exc:
                log.info("%s; copying it at the end instead", exc)
                staged, self._staged = self._staged, None
                await asyncio.to_thread(staged.discard)
        return await asyncio.to_thread(
            self._store.deliver, task_id, self._dest, overwrite=self._overwrite
        )

    async def checked(self, task_id: str) -> frozenset[int]:
        """The pieces of ``task_id`` staged and checked once the copies queued now are done."""
        await self._settle()
        return frozenset() if self._staged is None else self._staged.checked(task_id)

    async def aclose(self) -> None:
        """Stop copying and drop the staged file (it vanishes unless delivered)."""
        worker, self._worker = self._worker, None
        try:
            if worker is not None and not worker.done():
                worker.cancel()
                await asyncio.wait([worker])  # a cancellation of ours still reaches the caller
        finally:
            finished = worker is not None and worker.done() and not worker.cancelled()
            if finished and (error := worker.exception()) is not None:  # type: ignore[union-attr]
                log.warning("%s: staging failed: %r", self._dest, error)
            if self._staged is not None:
                await asyncio.to_thread(self._staged.discard)  # waits for a hop still running

    async def _settle(self) -> None:
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def _copy_pending(self) -> None:
        assert self._staged is not None
        while self._pending and self._task is not None and self._failure is None:
            task, batch = self._task, self._pending[:BATCH]
            del self._pending[:BATCH]
            try:
                await asyncio.get_running_loop().run_in_executor(
                    _STAGING, self._staged.copy_pieces, task.task_id, task.content_path, batch
                )
            except DiskFullError as exc:  # the output's disk: ``deliver`` raises it
                self._failure = exc
            except DamselflyError as exc:  # ``deliver`` copies and checks them once more
                log.debug("%s: staging pieces %s: %s", self._dest, [p.number for p in batch], exc)
