"""``SqliteMetadataStore``: task and piece records in one SQLite file, shared by processes.

Choices, and why:

- **WAL, synchronous=NORMAL.** Readers never block the writer and two processes (dfget and
  dfdaemon) can share the file. Every write is its own transaction and is committed before the
  call returns; at NORMAL a commit is not fsynced, so a recorded piece survives ``kill -9`` of
  the process (the WAL is in the page cache) but maybe not a power cut. That is enough because
  the store re-verifies recorded pieces against their digests when a task is reopened (all of
  them, unless a verified fingerprint written after them vouches for the task); a lost or torn
  record only costs a re-download. Measured here: 8,000-20,000 ``piece_finished``
  calls per second (see ``tests/integration/test_storage_processes.py``), far above the few
  hundred a fast download needs.
- **One connection, one ``threading.Lock``.** ``check_same_thread=False``; every statement runs
  under the lock, so worker threads can record pieces concurrently. ``busy_timeout`` makes a
  second process wait for the write lock instead of failing.
- **Versioned schema** in ``PRAGMA user_version``, upgraded one step at a time in one
  transaction (``_MIGRATIONS[n]`` takes version n to n+1): 0 is an empty file; 1 has ``tasks``
  and ``pieces``; 2 adds ``verified_tasks`` (one fingerprint per task, deleted with its task by
  the foreign key). Rows of older versions are kept. A newer version than this code knows
  raises ``StorageError`` instead of guessing (so an older damselfly refuses a store a newer
  one has opened).
- **The fingerprint is cleared in the same transaction** as the piece or state change that
  makes it stale, so no reader ever sees a changed task that still looks verified.
- **Strict LRU order.** ``access_seq`` is a counter bumped on registration and on every access,
  so two accesses in the same clock tick still order correctly.

- **A full disk is survivable.** Given a ``SpaceReserve`` (``space.py``), a write that fails
  with SQLITE_FULL deletes the reserve and is retried once, so a failure can still be recorded
  and a task deleted on a full disk.

``sqlite3`` errors are mapped here, once: SQLITE_FULL to ``DiskFullError``, anything else to
``StorageError``; a foreign-key failure on ``piece_finished`` to ``TaskNotFoundError``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

from damselfly.core.errors import DiskFullError, StorageError
from damselfly.storage.metadata import PieceMeta, TaskMeta, TaskNotFoundError, TaskState
from damselfly.storage.space import SpaceReserve

_T = TypeVar("_T")

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id        TEXT PRIMARY KEY,
    url            TEXT NOT NULL,
    content_length INTEGER NOT NULL,
    piece_length   INTEGER NOT NULL,
    state          TEXT NOT NULL,
    content_digest TEXT,
    created_at     REAL NOT NULL,
    accessed_at    REAL NOT NULL,
    access_seq     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_access ON tasks (access_seq);
CREATE TABLE IF NOT EXISTS pieces (
    task_id TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    number  INTEGER NOT NULL,
    offset  INTEGER NOT NULL,
    length  INTEGER NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (task_id, number)
) WITHOUT ROWID;
"""
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS verified_tasks (
    task_id     TEXT PRIMARY KEY REFERENCES tasks (task_id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL
) WITHOUT ROWID;
"""
_MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2)  # _MIGRATIONS[n]: version n -> n + 1

_SELECT_TASKS = """
SELECT task_id, url, content_length, piece_length, state, content_digest, created_at, accessed_at
FROM tasks
"""
_INSERT_TASK = """
INSERT OR IGNORE INTO tasks VALUES
(?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(access_seq), 0) + 1 FROM tasks))
"""
_TOUCH_TASK = """
UPDATE tasks SET accessed_at = ?, access_seq = (SELECT COALESCE(MAX(access_seq), 0) + 1 FROM tasks)
WHERE task_id = ?
"""
_CLEAR_VERIFIED = "DELETE FROM verified_tasks WHERE task_id = ?"
_SQLITE_FULL = 13

TaskRow = tuple[str, str, int, int, str, str | None, float, float]
PieceRow = tuple[int, int, int, str]


class SqliteMetadataStore:
    """The ``MetadataStore`` on SQLite; see the module docstring for the rules it keeps."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        reserve: SpaceReserve | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        self._reserve = reserve
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with _mapped(path):
            self._conn = _connect(path)
            _migrate(self._conn, path)

    # -- tasks ---------------------------------------------------------------------------------

    def task_registered(self, task: TaskMeta) -> None:
        self._execute(
            _INSERT_TASK,
            (
                task.task_id,
                task.url,
                task.content_length,
                task.piece_length,
                str(task.state),
                task.content_digest,
                task.created_at,
                task.accessed_at,
            ),
        )

    def get_task(self, task_id: str) -> TaskMeta | None:
        rows = self._query(_SELECT_TASKS + "WHERE task_id = ?", (task_id,))
        return _task(rows[0]) if rows else None

    def task_started(self, task_id: str) -> None:
        self._set_state(task_id, TaskState.RUNNING, clear_verified=True)

    def task_succeeded(self, task_id: str) -> None:
        self._set_state(task_id, TaskState.SUCCEEDED, clear_verified=False)

    def task_failed(self, task_id: str) -> None:
        self._set_state(task_id, TaskState.FAILED, clear_verified=True)

    def task_accessed(self, task_id: str) -> None:
        if self._execute(_TOUCH_TASK, (self._clock(), task_id)) == 0:
            raise TaskNotFoundError(task_id)

    def task_deleted(self, task_id: str) -> None:
        """Its pieces and fingerprint go with it (``ON DELETE CASCADE``)."""
        self._execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))

    def task_verified(self, task_id: str, fingerprint: str) -> None:
        sql = "INSERT OR REPLACE INTO verified_tasks VALUES (?, ?)"
        with _unknown_task_on_integrity_error(task_id):
            self._execute(sql, (task_id, fingerprint))

    def verified_fingerprint(self, task_id: str) -> str | None:
        sql = "SELECT fingerprint FROM verified_tasks WHERE task_id = ?"
        rows = self._query(sql, (task_id,))
        return cast(str, rows[0][0]) if rows else None

    def tasks_by_access(self) -> list[TaskMeta]:
        rows = self._query(_SELECT_TASKS + "ORDER BY access_seq", ())
        return [_task(row) for row in rows]

    # -- pieces --------------------------------------------------------------------------------

    def piece_finished(self, task_id: str, piece: PieceMeta) -> None:
        sql = "INSERT OR REPLACE INTO pieces VALUES (?, ?, ?, ?, ?)"
        row = (task_id, piece.number, piece.offset, piece.length, piece.digest)
        with _unknown_task_on_integrity_error(task_id):
            self._transaction([(_CLEAR_VERIFIED, (task_id,)), (sql, row)])

    def piece_dropped(self, task_id: str, number: int) -> None:
        sql = "DELETE FROM pieces WHERE task_id = ? AND number = ?"
        self._transaction([(_CLEAR_VERIFIED, (task_id,)), (sql, (task_id, number))])

    def get_piece(self, task_id: str, number: int) -> PieceMeta | None:
        sql = "SELECT number, offset, length, digest FROM pieces WHERE task_id = ? AND number = ?"
        rows = self._query(sql, (task_id, number))
        return _piece(rows[0]) if rows else None

    def pieces(self, task_id: str) -> list[PieceMeta]:
        sql = "SELECT number, offset, length, digest FROM pieces WHERE task_id = ? ORDER BY number"
        return [_piece(row) for row in self._query(sql, (task_id,))]

    def others_changes(self) -> int:
        (version,) = self._query("PRAGMA data_version", ())[0]
        assert isinstance(version, int)
        return version

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- plumbing ------------------------------------------------------------------------------

    def _set_state(self, task_id: str, state: TaskState, *, clear_verified: bool) -> None:
        steps: list[tuple[str, tuple[object, ...]]] = []
        if clear_verified:
            steps.append((_CLEAR_VERIFIED, (task_id,)))
        steps.append(("UPDATE tasks SET state = ? WHERE task_id = ?", (str(state), task_id)))
        if self._transaction(steps)[-1] == 0:
            raise TaskNotFoundError(task_id)

    def _execute(self, sql: str, params: tuple[object, ...]) -> int:
        """Run one write statement in its own committed transaction; return rows changed."""
        return self._written(lambda: self._execute_once(sql, params))

    def _execute_once(self, sql: str, params: tuple[object, ...]) -> int:
        with self._lock, _mapped(self._path):
            return self._connection().execute(sql, params).rowcount

    def _transaction(self, steps: Sequence[tuple[str, tuple[object, ...]]]) -> list[int]:
        """Run write statements in one committed transaction; return rows changed by each."""
        return self._written(lambda: self._transaction_once(steps))

    def _written(self, write: Callable[[], _T]) -> _T:
        """Run ``write``; on a full disk give back the reserve and run it once more."""
        try:
            return write()
        except DiskFullError:
            if self._reserve is None or not self._reserve.release():
                raise
        return write()

    def _transaction_once(self, steps: Sequence[tuple[str, tuple[object, ...]]]) -> list[int]:
        with self._lock, _mapped(self._path):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                counts = [conn.execute(sql, params).rowcount for sql, params in steps]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return counts

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock, _mapped(self._path):
            return list(self._connection().execute(sql, params).fetchall())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"metadata store {self._path} is closed")
        return self._conn


def _connect(path: Path) -> sqlite3.Connection:
    _create_private(path)
    # isolation_level=None: autocommit, so each statement is one transaction committed at once.
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. The switch needs the database to itself and SQLite may refuse it at
    once ("database is locked", busy timeout or not) while another process opens the same new
    store: try again for up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create_private(path: Path) -> None:
    """Create the database file 0600 (SQLite would use 0644; its -wal/-shm copy the mode)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"metadata {path}: cannot create: {exc.strerror}") from exc


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")  # two processes creating the schema at once: one waits
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"metadata {path}: schema version {version} is newer than this damselfly "
                f"supports ({SCHEMA_VERSION}); upgrade damselfly or use another storage dir"
            )
        for step in _MIGRATIONS[version:]:
            _run_script(conn, step)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        raise


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement on its own (``executescript`` would commit the open transaction)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _task(row: tuple[object, ...]) -> TaskMeta:
    task_id, url, content_length, piece_length, state, digest, created_at, accessed_at = cast(
        TaskRow, row
    )
    return TaskMeta(
        task_id,
        url,
        content_length,
        piece_length,
        TaskState(state),
        digest,
        created_at,
        accessed_at,
    )


def _piece(row: tuple[object, ...]) -> PieceMeta:
    return PieceMeta(*cast(PieceRow, row))


@contextmanager
def _unknown_task_on_integrity_error(task_id: str) -> Iterator[None]:
    """A foreign-key failure (already mapped by ``_mapped``) means the task is not known."""
    try:
        yield
    except StorageError as exc:
        if isinstance(exc.__cause__, sqlite3.IntegrityError):
            raise TaskNotFoundError(task_id) from exc.__cause__
        raise


@contextmanager
def _mapped(path: Path) -> Iterator[None]:
    """Map ``sqlite3`` errors into the damselfly tree, once, here."""
    try:
        yield
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            raise DiskFullError(f"metadata {path}: disk full: {exc}") from exc
        raise StorageError(f"metadata {path}: {exc}") from exc
