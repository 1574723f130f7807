"""TaskStorage: writing, verifying, reading and recording pieces (memory metadata fake)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.core.digests import piece_digest
from damselfly.core.errors import PieceDigestError, StorageError
from damselfly.storage.metadata import PieceMeta, PieceNotHeldError, TaskState
from damselfly.storage.store import Store, TaskStorage
from damselfly.testing.memory_metadata import MemoryMetadataStore

TASK_ID = "a1" * 32
PIECE = 1024
DATA = bytes(range(256)) * 10 + b"tail"  # 2564 bytes: pieces of 1024, 1024, 516


@pytest.fixture
def meta() -> MemoryMetadataStore:
    return MemoryMetadataStore()


@pytest.fixture
def store(tmp_path: Path, meta: MemoryMetadataStore) -> Iterator[Store]:
    with Store(tmp_path / "store", metadata=meta) as store:
        yield store


@pytest.fixture
def task(store: Store) -> Iterator[TaskStorage]:
    with store.open_task(
        TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
    ) as task:
        yield task


def chunk(number: int) -> bytes:
    return DATA[number * PIECE : (number + 1) * PIECE]


def test_geometry_and_sparse_file(task: TaskStorage) -> None:
    assert (task.piece_count, task.content_length, task.piece_length) == (3, 2564, 1024)
    assert task.content_path == task.content_path.parent.parent / TASK_ID[:2] / TASK_ID
    assert task.content_path.stat().st_size == len(DATA)
    assert task.finished_pieces() == frozenset()
    assert not task.is_complete


def test_write_then_read_every_piece(task: TaskStorage, meta: MemoryMetadataStore) -> None:
    for number in (2, 0, 1):
        recorded = task.write_piece(number, memoryview(chunk(number)))
        assert recorded == PieceMeta(
            number, number * PIECE, len(chunk(number)), piece_digest(chunk(number))
        )
    assert task.is_complete
    assert task.finished_pieces() == {0, 1, 2}
    assert [task.read_piece(n) for n in range(3)] == [chunk(0), chunk(1), chunk(2)]
    assert task.content_path.read_bytes() == DATA
    assert meta.calls["piece_finished"] == 3


def test_wrong_length_is_refused(task: TaskStorage) -> None:
    with pytest.raises(ValueError, match="expected 516 bytes, got 1024"):
        task.write_piece(2, chunk(0))
    with pytest.raises(ValueError, match="out of range"):
        task.write_piece(3, b"x")
    assert task.finished_pieces() == frozenset()


def test_digest_mismatch_writes_and_records_nothing(
    task: TaskStorage, meta: MemoryMetadataStore
) -> None:
    expected = piece_digest(b"something else")
    with pytest.raises(PieceDigestError) as info:
        task.write_piece(0, chunk(0), expected_digest=expected)
    assert (info.value.piece_number, info.value.expected) == (0, expected)
    assert info.value.actual == piece_digest(chunk(0))
    assert task.content_path.read_bytes() == bytes(len(DATA))
    assert meta.calls["piece_finished"] == 0


def test_matching_expected_digest_is_accepted(task: TaskStorage) -> None:
    task.write_piece(1, chunk(1), expected_digest=piece_digest(chunk(1)))
    assert task.read_piece(1) == chunk(1)


def test_rewriting_a_held_piece_is_a_no_op(task: TaskStorage, meta: MemoryMetadataStore) -> None:
    first = task.write_piece(0, chunk(0))
    assert task.write_piece(0, bytearray(chunk(0))) == first
    assert meta.calls["piece_finished"] == 1


def test_other_bytes_for_a_held_piece_are_refused(task: TaskStorage) -> None:
    task.write_piece(0, chunk(0))
    with pytest.raises(PieceDigestError, match="already held"):
        task.write_piece(0, bytes(PIECE))
    assert task.read_piece(0) == chunk(0)


def test_held_piece_damaged_on_disk_is_rewritten(task: TaskStorage) -> None:
    task.write_piece(0, chunk(0))
    with open(task.content_path, "r+b") as f:
        f.write(b"\xff" * 10)
    task.write_piece(0, chunk(0))
    assert task.read_piece(0) == chunk(0)


def test_reading_a_missing_piece_raises(task: TaskStorage) -> None:
    with pytest.raises(PieceNotHeldError) as info:
        task.read_piece(1)
    assert info.value.piece_number == 1


def test_read_range_spans_pieces(task: TaskStorage) -> None:
    task.write_piece(0, chunk(0))
    task.write_piece(1, chunk(1))
    assert task.read_range(1000, 100) == DATA[1000:1100]
    assert task.read_range(0, 0) == b""
    with pytest.raises(PieceNotHeldError) as info:
        task.read_range(2000, 100)  # touches piece 2, not held
    assert info.value.piece_number == 2
    with pytest.raises(ValueError, match="outside the content"):
        task.read_range(2500, 100)


def test_drop_piece(task: TaskStorage) -> None:
    task.write_piece(0, chunk(0))
    task.drop_piece(0)
    assert not task.has_piece(0)
    assert task.piece_meta(0) is None


def test_mark_succeeded_needs_every_piece(task: TaskStorage, store: Store) -> None:
    task.write_piece(0, chunk(0))
    with pytest.raises(StorageError, match="1 of 3 pieces"):
        task.mark_succeeded()
    task.write_piece(1, chunk(1))
    task.write_piece(2, chunk(2))
    task.mark_succeeded()
    got = store.get_task(TASK_ID)
    assert got is not None
    assert got.state is TaskState.SUCCEEDED


def test_mark_failed(task: TaskStorage, store: Store) -> None:
    task.mark_failed()
    got = store.get_task(TASK_ID)
    assert got is not None
    assert got.state is TaskState.FAILED


def test_open_sets_running_and_scrubs_the_url(store: Store) -> None:
    url = "https://user:secret@host/f?X-Amz-Signature=abc&token=t0k&part=1"
    with store.open_task("b2" * 32, url=url, content_length=5, piece_length=4):
        got = store.get_task("b2" * 32)
    assert got is not None
    assert got.state is TaskState.RUNNING
    assert got.url == "https://host/f?part=1"


def test_closed_task_refuses_calls(task: TaskStorage) -> None:
    task.close()
    task.close()  # idempotent
    assert task.closed
    with pytest.raises(StorageError, match="closed"):
        task.write_piece(0, chunk(0))
    with pytest.raises(StorageError, match="closed"):
        task.has_piece(0)


def test_empty_task_is_complete_at_once(store: Store, tmp_path: Path) -> None:
    with store.open_task("c3" * 32, url="https://x/e", content_length=0, piece_length=4) as task:
        assert task.piece_count == 0
        assert task.is_complete
        task.mark_succeeded()
    store.deliver("c3" * 32, tmp_path / "empty")
    assert (tmp_path / "empty").read_bytes() == b""


@pytest.mark.parametrize("bad", ["", "a", "../etc", "ab/cd", ".hidden", "x" * 129, "ab cd"])
def test_unsafe_task_ids_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(ValueError, match="task id"):
        store.open_task(bad, url="https://x/", content_length=1, piece_length=1)


@pytest.mark.parametrize(("length", "piece"), [(-1, 4), (4, 0)])
def test_bad_lengths_are_refused(store: Store, length: int, piece: int) -> None:
    with pytest.raises(ValueError, match="length"):
        store.open_task(TASK_ID, url="https://x/", content_length=length, piece_length=piece)


def test_closing_the_store_closes_open_tasks(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", metadata=MemoryMetadataStore())
    task = store.open_task(TASK_ID, url="https://x/", content_length=4, piece_length=4)
    store.close()
    assert task.closed
    with pytest.raises(StorageError, match="closed"):
        store.open_task(TASK_ID, url="https://x/", content_length=4, piece_length=4)


def test_store_dirs_are_private(tmp_path: Path) -> None:
    root = tmp_path / "new" / "store"
    Store(root, metadata=MemoryMetadataStore()).close()
    assert oct(os.stat(root).st_mode & 0o777) == oct(0o700)
    assert oct(os.stat(root / "content").st_mode & 0o777) == oct(0o700)
