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
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
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
