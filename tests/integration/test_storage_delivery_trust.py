"""Which pieces ``Store.deliver`` re-hashes in the staged output (``verification.py``): none
that this ``Store`` just hashed and wrote, untouched since (the task still open, or just
closed); all of them after anything else (a cache hit in a new process, a write by someone
else before or during the staging, a hard link)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from damselfly.storage import store as store_module
from damselfly.storage.store import Store, TaskStorage
from damselfly.storage.verification import CorruptContentError

TASK_ID = "f6" * 32
PIECE = 64 * 1024
COUNT = 5
DATA = os.urandom(COUNT * PIECE - 10)


def chunk(number: int) -> bytes:
    return DATA[number * PIECE : (number + 1) * PIECE]


def open_task(store: Store) -> TaskStorage:
    return store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE)


def fill(task: TaskStorage) -> None:
    for number in range(COUNT):
        task.write_piece(number, chunk(number))
    task.mark_succeeded()


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as content:
        content.seek(offset)
        content.write(b"\x00" if DATA[offset] else b"\x01")


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pieces each delivery re-hashed."""
    counts: list[int] = []
    real = store_module.bad_pieces

    def counting(content: Any, pieces: Any) -> list[int]:
        pieces = list(pieces)
        counts.append(len(pieces))
        return real(content, pieces)

    monkeypatch.setattr(store_module, "bad_pieces", counting)
    return counts


def test_pieces_just_written_here_are_not_hashed_again(tmp_path: Path, hashed: list[int]) -> None:
    with Store(tmp_path / "s") as store, open_task(store) as task:
        fill(task)
        store.deliver(TASK_ID, tmp_path / "one")
        store.deliver(TASK_ID, tmp_path / "two", hard_link=True)
    # a hard link moves the inode's ctime while it is staged: not trusted, hashed again
    assert hashed == [0, COUNT]
    assert (tmp_path / "one").read_bytes() == DATA == (tmp_path / "two").read_bytes()


def test_a_cache_hit_in_a_new_store_hashes_every_piece(tmp_path: Path, hashed: list[int]) -> None:
    with Store(tmp_path / "s") as store, open_task(store) as task:
        fill(task)
    with Store(tmp_path / "s") as store, open_task(store):
        store.deliver(TASK_ID, tmp_path / "out")
    assert hashed == [COUNT]


def test_a_task_closed_just_before_delivery_is_trusted(tmp_path: Path, hashed: list[int]) -> None:
    with Store(tmp_path / "s") as store:
        with open_task(store) as task:  # a download closes its task, then delivers it
            fill(task)
        store.deliver(TASK_ID, tmp_path / "out")
    assert hashed == [0]
    assert (tmp_path / "out").read_bytes() == DATA


def test_a_write_after_the_task_closed_is_caught(tmp_path: Path, hashed: list[int]) -> None:
    with Store(tmp_path / "s") as store:
        with open_task(store) as task:
            fill(task)
        flip(store.content_path(TASK_ID), 4 * PIECE + 1)
        with pytest.raises(CorruptContentError) as bad:
            store.deliver(TASK_ID, tmp_path / "out")
    assert bad.value.pieces == [4]
    assert hashed == [COUNT]


def test_a_write_by_someone_else_is_caught(tmp_path: Path, hashed: list[int]) -> None:
    with Store(tmp_path / "s") as store, open_task(store) as task:
        fill(task)
        flip(task.content_path, 2 * PIECE + 3)
        with pytest.raises(CorruptContentError) as bad:
            store.deliver(TASK_ID, tmp_path / "out")
    assert bad.value.pieces == [2]
    assert hashed == [COUNT]
    assert not (tmp_path / "out").exists()


def test_a_write_while_the_output_is_staged_is_caught(
    tmp_path: Path, hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store_module.deliver_file

    def written_meanwhile(src: Path, dest: Path, **kwargs: Any) -> Any:
        flip(src, 3 * PIECE + 5)  # after the store asked its index, before the copy
        return real(src, dest, **kwargs)

    monkeypatch.setattr(store_module, "deliver_file", written_meanwhile)
    with Store(tmp_path / "s") as store, open_task(store) as task:
        fill(task)
        with pytest.raises(CorruptContentError) as bad:
            store.deliver(TASK_ID, tmp_path / "out")
    assert bad.value.pieces == [3]
    assert hashed == [COUNT]
