"""Reopening a succeeded task: the verified-fingerprint fast path, and what makes it re-verify
(real SQLite metadata).

Piece reads are counted with a pass-through wrapper on ``ContentFile.digest_at``, the only way
the store re-hashes a piece."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from damselfly.storage.content import ContentFile, ContentLayout
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.store import Store, TaskStorage

TASK_ID = "e7" * 32
PIECE = 1024
DATA = os.urandom(3 * PIECE - 100)  # pieces of 1024, 1024, 924


class DigestCounter:
    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> DigestCounter:
    counter = DigestCounter()
    real = ContentFile.digest_at

    def counting(self: ContentFile, offset: int, length: int) -> str:
        counter.ranges.append((offset, length))
        return real(self, offset, length)

    monkeypatch.setattr(ContentFile, "digest_at", counting)
    return counter


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store holding one complete task, marked succeeded."""
    root = tmp_path / "store"
    with Store(root) as store, open_task(store) as task:
        for number in range(3):
            task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
        task.mark_succeeded()
    return root


def open_task(store: Store) -> TaskStorage:
    return store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE)


@contextmanager
def reopened(root: Path) -> Iterator[TaskStorage]:
    with Store(root) as store, open_task(store) as task:
        yield task


def held_after_reopen(root: Path) -> tuple[set[int], str]:
    """The pieces held after reopening, and the task's state then."""
    with Store(root) as store, open_task(store) as task:
        meta = store.get_task(TASK_ID)
        assert meta is not None
        return set(task.finished_pieces()), str(meta.state)


def content_path(root: Path) -> Path:
    return ContentLayout(root).path_for(TASK_ID)


def corrupt_in_place(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([DATA[offset] ^ 0xFF]))


def test_second_open_of_unchanged_task_reads_no_piece(
    root: Path, hashed: DigestCounter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="damselfly.storage"):
        assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")
        assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")
    assert hashed.ranges == []
    assert caplog.text.count("unchanged since verified; pieces not re-read") == 2


def test_complete_task_never_marked_succeeded_is_reverified(
    tmp_path: Path, hashed: DigestCounter
) -> None:
    with Store(tmp_path) as store, open_task(store) as task:
        for number in range(3):
            task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
    assert held_after_reopen(tmp_path) == ({0, 1, 2}, "running")
    assert hashed.ranges == [(0, PIECE), (PIECE, PIECE), (2 * PIECE, len(DATA) - 2 * PIECE)]


def test_trade_off_in_place_change_with_mtime_restored_is_not_noticed(
    root: Path, hashed: DigestCounter
) -> None:
    """Documented in store.py: the fast path trusts size, inode and mtime."""
    path = content_path(root)
    st = os.stat(path)
    corrupt_in_place(path, PIECE + 7)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with reopened(root) as task:
        assert task.finished_pieces() == {0, 1, 2}
        assert task.read_piece(1) != DATA[PIECE : 2 * PIECE]
    assert hashed.ranges == []


def test_in_place_change_that_moves_mtime_is_dropped(root: Path, hashed: DigestCounter) -> None:
    corrupt_in_place(content_path(root), PIECE + 7)
    assert held_after_reopen(root) == ({0, 2}, "running")
    assert len(hashed.ranges) == 3


def test_change_in_the_same_timestamp_tick_is_dropped(tmp_path: Path) -> None:
    """On a kernel with coarse timestamps, a write right after the last piece's may get the
    very same mtime; ``mark_succeeded`` stepped the mtime back, so it still differs."""
    with Store(tmp_path) as store, open_task(store) as task:
        for number in range(3):
            task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
        st = os.stat(task.content_path)  # mtime as the last piece's write left it
        task.mark_succeeded()
    corrupt_in_place(task.content_path, 5)
    os.utime(task.content_path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same tick
    assert held_after_reopen(tmp_path) == ({1, 2}, "running")


def test_a_changed_hard_linked_output_is_copied_never_written(
    root: Path, tmp_path: Path, hashed: DigestCounter
) -> None:
    out = tmp_path / "model.bin"
    with Store(root) as store:
        assert store.deliver(TASK_ID, out, hard_link=True) is DeliveryMethod.HARD_LINK
    assert len(hashed.ranges) == 3  # none vouched for by a fill: every piece re-hashed
    hashed.ranges.clear()
    edited = bytearray(DATA)
    edited[2 * PIECE + 3] ^= 1
    with open(out, "r+b") as f:  # the user edits the output: same inode as the content file
        f.seek(2 * PIECE + 3)
        f.write(edited[2 * PIECE + 3 : 2 * PIECE + 4])
    with reopened(root) as task:
        assert task.finished_pieces() == {0, 1}  # a private copy, re-verified
        assert os.stat(task.content_path).st_ino != os.stat(out).st_ino
        task.write_piece(2, DATA[2 * PIECE :])
        task.mark_succeeded()
        assert task.content_path.read_bytes() == DATA
    assert out.read_bytes() == edited  # the store never wrote into the user's file
    assert out.stat().st_nlink == 1
    assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")


def test_reverified_succeeded_task_gets_a_fresh_fingerprint(
    root: Path, hashed: DigestCounter
) -> None:
    path = content_path(root)
    os.utime(path, ns=(0, 10**18))  # touched, bytes unchanged
    assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")
    assert len(hashed.ranges) == 3
    hashed.ranges.clear()
    assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")
    assert hashed.ranges == []


def test_cache_hit_leaves_the_mtime_alone(root: Path) -> None:
    path = content_path(root)
    mtime = os.stat(path).st_mtime_ns
    with reopened(root) as task:
        task.mark_succeeded()  # what a download that found every piece held does
    assert os.stat(path).st_mtime_ns == mtime


def test_store_from_schema_version_1_reverifies_once(root: Path, hashed: DigestCounter) -> None:
    conn = sqlite3.connect(root / "metadata.db")
    conn.executescript("DROP TABLE verified_tasks; PRAGMA user_version = 1;")
    conn.close()
    assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")
    assert len(hashed.ranges) == 3
    hashed.ranges.clear()
    assert held_after_reopen(root) == ({0, 1, 2}, "succeeded")
    assert hashed.ranges == []


def test_dropped_piece_makes_the_next_open_reverify(root: Path, hashed: DigestCounter) -> None:
    with reopened(root) as task:
        task.drop_piece(0)
    assert held_after_reopen(root) == ({1, 2}, "running")
    assert len(hashed.ranges) == 2
