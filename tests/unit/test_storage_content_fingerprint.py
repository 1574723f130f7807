"""Content-file fingerprints, and how TaskStorage records and clears them (memory metadata)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.storage.content import ContentFile
from damselfly.storage.store import Store, TaskStorage
from damselfly.testing.memory_metadata import MemoryMetadataStore

TASK_ID = "f1" * 32
PIECE = 1024
DATA = bytes(range(256)) * 10 + b"tail"  # pieces of 1024, 1024, 516


@pytest.fixture
def content(tmp_path: Path) -> Iterator[ContentFile]:
    path = tmp_path / "content"
    path.write_bytes(b"x" * 100)
    file = ContentFile.open(path, create=False)
    yield file
    file.close()


@pytest.fixture
def meta() -> MemoryMetadataStore:
    return MemoryMetadataStore()


@pytest.fixture
def task(tmp_path: Path, meta: MemoryMetadataStore) -> Iterator[TaskStorage]:
    with (
        Store(tmp_path / "store", metadata=meta) as store,
        store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        ) as task,
    ):
        for number in range(3):
            task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
        yield task


def test_fingerprint_is_size_mtime_inode_device(content: ContentFile) -> None:
    st = os.stat(content.path)
    assert content.fingerprint() == (
        f"size=100,mtime_ns={st.st_mtime_ns},ino={st.st_ino},dev={st.st_dev}"
    )


def test_hard_link_keeps_the_fingerprint(content: ContentFile, tmp_path: Path) -> None:
    before = content.fingerprint()
    os.link(content.path, tmp_path / "output")
    assert os.stat(content.path).st_nlink == 2
    assert content.fingerprint() == before


def test_same_size_write_changes_the_fingerprint(content: ContentFile) -> None:
    before = content.fingerprint()
    content.write_at(10, b"y")
    assert content.fingerprint() != before


def test_stamp_steps_the_mtime_back_one_nanosecond(content: ContentFile) -> None:
    mtime = os.stat(content.path).st_mtime_ns
    stamped = content.stamp_fingerprint()
    assert os.stat(content.path).st_mtime_ns == mtime - 1
    assert stamped == content.fingerprint()
    assert stamped is not None
    assert f"mtime_ns={mtime - 1}," in stamped


def test_write_in_the_same_timestamp_tick_still_changes_a_stamped_fingerprint(
    content: ContentFile,
) -> None:
    """A kernel with coarse file timestamps gives a write in the same tick the same mtime
    as the last one; simulated here by setting that mtime explicitly after the write."""
    st = os.stat(content.path)
    stamped = content.stamp_fingerprint()
    content.write_at(10, b"y")
    os.utime(content.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content.fingerprint() != stamped


def test_mark_succeeded_records_the_fingerprint(
    task: TaskStorage, meta: MemoryMetadataStore
) -> None:
    assert meta.verified_fingerprint(TASK_ID) is None
    task.mark_succeeded()
    assert meta.verified_fingerprint(TASK_ID) == task_fingerprint(task)
    assert task_fingerprint(task).startswith(f"size={len(DATA)},")


def test_mark_succeeded_again_leaves_an_unchanged_file_alone(
    task: TaskStorage, meta: MemoryMetadataStore
) -> None:
    task.mark_succeeded()
    mtime = os.stat(task.content_path).st_mtime_ns
    task.mark_succeeded()
    assert meta.calls["task_verified"] == 1
    assert os.stat(task.content_path).st_mtime_ns == mtime


def test_drop_piece_clears_the_fingerprint(task: TaskStorage, meta: MemoryMetadataStore) -> None:
    task.mark_succeeded()
    task.drop_piece(1)
    assert meta.verified_fingerprint(TASK_ID) is None


def test_write_piece_clears_the_fingerprint(task: TaskStorage, meta: MemoryMetadataStore) -> None:
    task.drop_piece(1)
    meta.task_verified(TASK_ID, "stale")  # as if recorded by a racing handle
    task.write_piece(1, DATA[PIECE : 2 * PIECE])
    assert meta.verified_fingerprint(TASK_ID) is None


def test_write_of_a_piece_already_held_writes_nothing_and_keeps_it(
    task: TaskStorage, meta: MemoryMetadataStore
) -> None:
    task.mark_succeeded()
    recorded = meta.verified_fingerprint(TASK_ID)
    task.write_piece(0, DATA[:PIECE])
    assert meta.verified_fingerprint(TASK_ID) == recorded == task_fingerprint(task)


def task_fingerprint(task: TaskStorage) -> str:
    st = os.stat(task.content_path)
    return f"size={st.st_size},mtime_ns={st.st_mtime_ns},ino={st.st_ino},dev={st.st_dev}"


def test_mark_failed_clears_the_fingerprint(task: TaskStorage, meta: MemoryMetadataStore) -> None:
    task.mark_succeeded()
    task.mark_failed()
    assert meta.verified_fingerprint(TASK_ID) is None
