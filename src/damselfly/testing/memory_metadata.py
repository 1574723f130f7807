"""``MemoryMetadataStore``: an in-memory ``MetadataStore`` for tests.

It keeps the same contract as ``SqliteMetadataStore`` (the contract suite in
``tests/contract/test_metadata_contract.py`` runs against both), is thread-safe, and counts the
calls it receives in ``calls`` so a test can assert, say, how many pieces were recorded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from damselfly.core.errors import StorageError
from damselfly.storage.metadata import PieceMeta, TaskMeta, TaskNotFoundError, TaskState

_CHANGES = (
    "task_registered",
    "task_started",
    "task_succeeded",
    "task_failed",
    "task_accessed",
    "piece_finished",
    "piece_dropped",
    "task_deleted",
    "task_verified",
)


class MemoryMetadataStore:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskMeta] = {}
        self._access_seq: dict[str, int] = {}
        self._pieces: dict[str, dict[int, PieceMeta]] = {}
        self._verified: dict[str, str] = {}
        self._next_seq = 0
        self._closed = False
        self.calls: Counter[str] = Counter()

    def task_registered(self, task: TaskMeta) -> None:
        with self._open("task_registered"):
            if task.task_id not in self._tasks:
                self._tasks[task.task_id] = task
                self._pieces[task.task_id] = {}
                self._bump(task.task_id)

    def get_task(self, task_id: str) -> TaskMeta | None:
        with self._open("get_task"):
            return self._tasks.get(task_id)

    def task_started(self, task_id: str) -> None:
        self._set_state("task_started", task_id, TaskState.RUNNING, clear_verified=True)

    def task_succeeded(self, task_id: str) -> None:
        self._set_state("task_succeeded", task_id, TaskState.SUCCEEDED, clear_verified=False)

    def task_failed(self, task_id: str) -> None:
        self._set_state("task_failed", task_id, TaskState.FAILED, clear_verified=True)

    def task_accessed(self, task_id: str) -> None:
        with self._open("task_accessed"):
            task = self._known(task_id)
            self._tasks[task_id] = replace(task, accessed_at=self._clock())
            self._bump(task_id)

    def piece_finished(self, task_id: str, piece: PieceMeta) -> None:
        with self._open("piece_finished"):
            self._known(task_id)
            self._pieces[task_id][piece.number] = piece
            self._verified.pop(task_id, None)

    def piece_dropped(self, task_id: str, number: int) -> None:
        with self._open("piece_dropped"):
            self._pieces.get(task_id, {}).pop(number, None)
            self._verified.pop(task_id, None)

    def get_piece(self, task_id: str, number: int) -> PieceMeta | None:
        with self._open("get_piece"):
            return self._pieces.get(task_id, {}).get(number)

    def pieces(self, task_id: str) -> list[PieceMeta]:
        with self._open("pieces"):
            held = self._pieces.get(task_id, {})
            return [held[number] for number in sorted(held)]

    def task_deleted(self, task_id: str) -> None:
        with self._open("task_deleted"):
            self._tasks.pop(task_id, None)
            self._pieces.pop(task_id, None)
            self._access_seq.pop(task_id, None)
            self._verified.pop(task_id, None)

    def task_verified(self, task_id: str, fingerprint: str) -> None:
        with self._open("task_verified"):
            self._known(task_id)
            self._verified[task_id] = fingerprint

    def verified_fingerprint(self, task_id: str) -> str | None:
        with self._open("verified_fingerprint"):
            return self._verified.get(task_id)

    def tasks_by_access(self) -> list[TaskMeta]:
        with self._open("tasks_by_access"):
            order = sorted(self._tasks, key=self._access_seq.__getitem__)
            return [self._tasks[task_id] for task_id in order]

    def close(self) -> None:
        with self._lock:
            self._closed = True

    # -- helpers -------------------------------------------------------------------------------

    def others_changes(self) -> int:
        """Moves with every change: which handle made it is not known here."""
        with self._lock:
            return sum(self.calls[call] for call in _CHANGES)

    def _set_state(
        self, call: str, task_id: str, state: TaskState, *, clear_verified: bool
    ) -> None:
        with self._open(call):
            self._tasks[task_id] = replace(self._known(task_id), state=state)
            if clear_verified:
                self._verified.pop(task_id, None)

    def _known(self, task_id: str) -> TaskMeta:
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    def _bump(self, task_id: str) -> None:
        self._next_seq += 1
        self._access_seq[task_id] = self._next_seq

    def _open(self, call: str) -> _Guard:
        return _Guard(self, call)


class _Guard:
    """Takes the store's lock, refuses calls after ``close``, counts the call."""

    def __init__(self, store: MemoryMetadataStore, call: str) -> None:
        self._store = store
        self._call = call

    def __enter__(self) -> None:
        self._store._lock.acquire()
        if self._store._closed:
            self._store._lock.release()
            raise StorageError("metadata store is closed")
        self._store.calls[self._call] += 1

    def __exit__(self, *exc_info: object) -> None:
        self._store._lock.release()
