"""What the store remembers about tasks and pieces, and the interface that remembers it.

A *task* is one file's worth of bytes cut into pieces of ``piece_length``; a *piece* is recorded
only after its bytes were written to the content file and its BLAKE3 digest computed, so a
recorded piece always names bytes that were on disk at that moment (the store re-verifies them
when a task is reopened, unless a verified fingerprint vouches for them, see ``store.py``).

``MetadataStore`` changes state through event-named methods (``task_started``,
``piece_finished``, ...), as Dragonfly's client does. Two implementations:
``SqliteMetadataStore`` (the real one, shared by processes on one machine) and
``damselfly.testing.memory_metadata.MemoryMetadataStore`` (a fake for tests). One contract
suite (``tests/contract/test_metadata_contract.py``) runs against both; its rules:

- ``task_registered`` inserts, or keeps the existing row untouched when the id is known.
- ``task_started`` / ``task_succeeded`` / ``task_failed`` / ``task_accessed`` and
  ``piece_finished`` raise ``TaskNotFoundError`` for an unknown task.
- ``piece_finished`` for a number already recorded replaces that row.
- ``piece_dropped`` and ``task_deleted`` are idempotent: unknown ids are no-ops.
- ``task_verified`` records the content file's fingerprint (``ContentFile.fingerprint``) at
  which every piece of the complete task was verified; it raises ``TaskNotFoundError`` for an
  unknown task and replaces an earlier one. ``verified_fingerprint`` returns it, or None.
  Any ``piece_finished``, ``piece_dropped``, ``task_started``, ``task_failed`` or
  ``task_deleted`` for the task clears it, in the same transaction as the change itself;
  ``task_succeeded``, ``task_accessed`` and a repeated ``task_registered`` keep it.
- ``tasks_by_access`` orders strictly by the last ``task_registered``/``task_accessed`` call
  (ties in wall-clock time broken by call order), least recent first.
- After ``close`` every call raises ``StorageError``.

Metadata never holds a secret: ``TaskMeta.url`` is the caller's redacted URL, and the store
scrubs it again (``core.redact.scrub_url``) before recording it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from damselfly.core.errors import StorageError


class TaskState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class TaskMeta:
    """One task as recorded. ``url`` is redacted: never userinfo, tokens or signatures."""

    task_id: str
    url: str
    content_length: int
    piece_length: int
    state: TaskState
    content_digest: str | None
    created_at: float
    accessed_at: float


@dataclass(frozen=True)
class PieceMeta:
    """One verified piece; ``digest`` is ``core.digests.piece_digest`` (``blake3:<hex>``)."""

    number: int
    offset: int
    length: int
    digest: str


class TaskNotFoundError(StorageError, KeyError):
    """A state change named a task the metadata store does not know."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id}: not found in the metadata store")
        self.task_id = task_id


class PieceNotHeldError(StorageError, LookupError):
    """A read asked for a piece the store does not hold (yet)."""

    def __init__(self, task_id: str, number: int) -> None:
        super().__init__(f"task {task_id}: piece {number} is not held")
        self.task_id = task_id
        self.piece_number = number


class MetadataStore(Protocol):
    """Task and piece records; implementations are safe to call from several threads."""

    def task_registered(self, task: TaskMeta) -> None:
        """Insert ``task``, or keep the existing row if its id is already known."""

    def get_task(self, task_id: str) -> TaskMeta | None: ...

    def task_started(self, task_id: str) -> None: ...

    def task_succeeded(self, task_id: str) -> None: ...

    def task_failed(self, task_id: str) -> None: ...

    def task_accessed(self, task_id: str) -> None:
        """Bump ``accessed_at`` (and the LRU order)."""

    def piece_finished(self, task_id: str, piece: PieceMeta) -> None: ...

    def piece_dropped(self, task_id: str, number: int) -> None: ...

    def get_piece(self, task_id: str, number: int) -> PieceMeta | None:
        """One recorded piece, or None (also for an unknown task)."""

    def pieces(self, task_id: str) -> list[PieceMeta]:
        """The recorded pieces of a task, by number (empty for an unknown task)."""

    def task_deleted(self, task_id: str) -> None:
        """Remove the task and all its pieces."""

    def task_verified(self, task_id: str, fingerprint: str) -> None:
        """Every piece of the complete task was verified while its file had ``fingerprint``."""

    def verified_fingerprint(self, task_id: str) -> str | None:
        """The fingerprint last recorded by ``task_verified`` and not cleared since, or None."""

    def tasks_by_access(self) -> list[TaskMeta]:
        """Every task, least recently accessed first."""

    def others_changes(self) -> int:
        """A number that moves whenever a change was committed through another handle of the
        same records (another process, another ``Store``) since it was last read; this
        handle's own changes may leave it as it is (SQLite's ``data_version``)."""

    def close(self) -> None: ...
