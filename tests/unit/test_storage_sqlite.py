"""SqliteMetadataStore beyond the shared contract: durability, pragmas, schema versions."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from damselfly.core.errors import StorageError
from damselfly.storage.metadata import PieceMeta, TaskMeta, TaskState
from damselfly.storage.sqlite_metadata import SCHEMA_VERSION, SqliteMetadataStore

TASK = TaskMeta("t1", "https://example.com/f", 100, 10, TaskState.PENDING, None, 1.0, 1.0)


def test_records_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    first = SqliteMetadataStore(db)
    first.task_registered(TASK)
    first.piece_finished("t1", PieceMeta(3, 30, 10, "blake3:ff"))
    first.task_succeeded("t1")
    first.close()
    second = SqliteMetadataStore(db)
    got = second.get_task("t1")
    assert got is not None
    assert got.state is TaskState.SUCCEEDED
    assert second.pieces("t1") == [PieceMeta(3, 30, 10, "blake3:ff")]
    second.close()


def test_database_is_wal_versioned_and_private(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    SqliteMetadataStore(db).close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    finally:
        conn.close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StorageError, match="schema version 99 is newer"):
        SqliteMetadataStore(db)


def test_not_a_database_maps_to_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="metadata") as info:
        SqliteMetadataStore(db)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_two_connections_see_each_others_writes(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    writer, reader = SqliteMetadataStore(db), SqliteMetadataStore(db)
    writer.task_registered(TASK)
    writer.piece_finished("t1", PieceMeta(0, 0, 10, "blake3:01"))
    assert reader.pieces("t1") == [PieceMeta(0, 0, 10, "blake3:01")]
    reader.piece_dropped("t1", 0)
    assert writer.pieces("t1") == []
    writer.close()
    reader.close()


# The schema damselfly shipped as version 1, frozen here (not imported) so that the test keeps
# describing real version-1 files whatever the code's constants become.
V1_SCHEMA = """
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY, url TEXT NOT NULL, content_length INTEGER NOT NULL,
    piece_length INTEGER NOT NULL, state TEXT NOT NULL, content_digest TEXT,
    created_at REAL NOT NULL, accessed_at REAL NOT NULL, access_seq INTEGER NOT NULL
);
CREATE INDEX tasks_by_access ON tasks (access_seq);
CREATE TABLE pieces (
    task_id TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    number INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    digest TEXT NOT NULL, PRIMARY KEY (task_id, number)
) WITHOUT ROWID;
INSERT INTO tasks VALUES ('t1', 'https://example.com/f', 100, 10, 'succeeded', NULL, 1, 2, 1);
INSERT INTO tasks VALUES ('t2', 'https://example.com/g', 20, 10, 'running', 'sha256:ab', 3, 4, 2);
INSERT INTO pieces VALUES ('t1', 0, 0, 10, 'blake3:00');
INSERT INTO pieces VALUES ('t1', 9, 90, 10, 'blake3:09');
INSERT INTO pieces VALUES ('t2', 1, 10, 10, 'blake3:21');
PRAGMA user_version = 1;
"""


def make_v1_database(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.executescript(V1_SCHEMA)
        conn.commit()
    finally:
        conn.close()


def user_version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_version_1_database_upgrades_and_keeps_tasks_and_pieces(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    make_v1_database(db)
    meta = SqliteMetadataStore(db)
    try:
        assert user_version(db) == 2
        assert [t.task_id for t in meta.tasks_by_access()] == ["t1", "t2"]
        assert meta.get_task("t1") == TaskMeta(
            "t1", "https://example.com/f", 100, 10, TaskState.SUCCEEDED, None, 1.0, 2.0
        )
        assert meta.pieces("t1") == [
            PieceMeta(0, 0, 10, "blake3:00"),
            PieceMeta(9, 90, 10, "blake3:09"),
        ]
        assert meta.pieces("t2") == [PieceMeta(1, 10, 10, "blake3:21")]
        assert meta.verified_fingerprint("t1") is None  # never verified by version 1
        meta.task_verified("t1", "fp")
        assert meta.verified_fingerprint("t1") == "fp"
        meta.task_deleted("t1")  # the new table's foreign key cascades on a migrated file too
        meta.task_registered(TaskMeta("t1", "u", 1, 1, TaskState.PENDING, None, 5.0, 5.0))
        assert meta.verified_fingerprint("t1") is None
    finally:
        meta.close()


def test_upgraded_database_reopens_without_migrating_again(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    make_v1_database(db)
    SqliteMetadataStore(db).close()
    meta = SqliteMetadataStore(db)
    meta.task_verified("t2", "fp")
    meta.close()
    meta = SqliteMetadataStore(db)
    try:
        assert meta.verified_fingerprint("t2") == "fp"
        assert len(meta.pieces("t1")) == 2
    finally:
        meta.close()
    assert user_version(db) == 2


def test_fingerprint_survives_reopen_and_is_seen_by_another_connection(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    first, second = SqliteMetadataStore(db), SqliteMetadataStore(db)
    first.task_registered(TASK)
    first.task_verified("t1", "fp")
    assert second.verified_fingerprint("t1") == "fp"
    second.piece_dropped("t1", 0)
    assert first.verified_fingerprint("t1") is None
    first.close()
    second.close()
