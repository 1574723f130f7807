"""Store on a real directory with SQLite metadata: resume, re-verification, threads, delivery."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from damselfly.core.errors import StorageError
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.store import Store, TaskStorage

TASK_ID = "d4" * 32
PIECE = 1024
DATA = os.urandom(3 * PIECE - 100)  # pieces of 1024, 1024, 924


def chunk(number: int, data: bytes = DATA, piece: int = PIECE) -> bytes:
    return data[number * piece : (number + 1) * piece]


def open_task(store: Store, length: int = len(DATA), piece: int = PIECE) -> TaskStorage:
    return store.open_task(TASK_ID, url="https://x/f", content_length=length, piece_length=piece)


def write(task: TaskStorage, *numbers: int) -> None:
    for number in numbers:
        task.write_piece(number, chunk(number))


def reopen(root: Path) -> tuple[Store, TaskStorage]:
    store = Store(root)
    return store, open_task(store)


def test_resume_in_a_new_store_keeps_verified_pieces(tmp_path: Path) -> None:
    with Store(tmp_path) as store, open_task(store) as task:
        write(task, 0, 2)
    store, task = reopen(tmp_path)
    with store, task:
        assert task.finished_pieces() == {0, 2}
        assert task.read_piece(2) == chunk(2)
        write(task, 1)
        assert task.is_complete
        assert task.content_path.read_bytes() == DATA


def test_piece_corrupted_on_disk_is_dropped_on_resume(tmp_path: Path) -> None:
    with Store(tmp_path) as store, open_task(store) as task:
        write(task, 0, 1, 2)
        path = task.content_path
    with open(path, "r+b") as f:
        f.seek(PIECE + 7)
        f.write(b"\x00" if DATA[PIECE + 7] else b"\x01")
    store, task = reopen(tmp_path)
    with store, task:
        assert task.finished_pieces() == {0, 2}
        write(task, 1)
        assert task.content_path.read_bytes() == DATA


def test_truncated_content_file_drops_the_missing_pieces(tmp_path: Path) -> None:
    zeros = bytes(len(DATA))  # zero pieces would "verify" against a re-extended sparse tail
    with Store(tmp_path) as store, open_task(store) as task:
        for number in range(3):
            task.write_piece(number, chunk(number, zeros))
        path = task.content_path
    os.truncate(path, PIECE + 500)
    store, task = reopen(tmp_path)
    with store, task:
        assert task.finished_pieces() == {0}
        assert path.stat().st_size == len(DATA)


def test_missing_content_file_drops_every_piece(tmp_path: Path) -> None:
    with Store(tmp_path) as store, open_task(store) as task:
        write(task, 0, 1)
        path = task.content_path
    path.unlink()
    store, task = reopen(tmp_path)
    with store, task:
        assert task.finished_pieces() == frozenset()


def test_other_lengths_discard_the_old_data_but_not_a_delivered_link(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Store(tmp_path / "s") as store:
        with open_task(store) as task:
            write(task, 0, 1, 2)
            task.mark_succeeded()
        assert store.deliver(TASK_ID, out, hard_link=True) is DeliveryMethod.HARD_LINK
        with open_task(store, length=len(DATA), piece=512) as task:
            assert task.finished_pieces() == frozenset()
            assert task.piece_count == 6
            task.write_piece(0, bytes(512))
    assert out.read_bytes() == DATA  # the old inode was unlinked, never truncated in place


def test_other_lengths_while_open_elsewhere_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path) as store, open_task(store) as task:
        write(task, 0)
        with pytest.raises(StorageError, match="open elsewhere with other lengths"):
            open_task(store, piece=512)
        assert task.read_piece(0) == chunk(0)


def test_two_handles_on_one_task_share_pieces(tmp_path: Path) -> None:
    with Store(tmp_path) as store, open_task(store) as first, open_task(store) as second:
        write(first, 0)
        write(second, 1)
        assert first.finished_pieces() == second.finished_pieces() == {0, 1}


def test_a_second_handle_in_the_same_store_does_not_reread_but_a_reopen_does(
    tmp_path: Path,
) -> None:
    with Store(tmp_path) as store:
        with open_task(store) as first:
            write(first, 0, 1)
            with open(first.content_path, "r+b") as f:  # damaged while the task is open
                f.seek(PIECE + 7)
                f.write(b"\x00" if DATA[PIECE + 7] else b"\x01")
            with open_task(store) as second:  # the piece server opening what the engine writes
                assert second.finished_pieces() == {0, 1}  # trusted: verified as written
        with open_task(store) as again:  # nobody had it open: re-read, the damage is found
            assert again.finished_pieces() == {0}


def test_succeeded_state_survives_reopen_only_while_complete(tmp_path: Path) -> None:
    with Store(tmp_path) as store, open_task(store) as task:
        write(task, 0, 1, 2)
        task.mark_succeeded()
    with Store(tmp_path) as store, open_task(store):
        assert str(store.get_task(TASK_ID).state) == "succeeded"  # type: ignore[union-attr]
    os.truncate(store.content_path(TASK_ID), 10)
    with Store(tmp_path) as store, open_task(store):
        assert str(store.get_task(TASK_ID).state) == "running"  # type: ignore[union-attr]


def test_eight_threads_write_one_task(tmp_path: Path) -> None:
    piece, count = 64 * 1024, 64
    data = os.urandom(piece * count - 123)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(task: TaskStorage, first: int) -> None:
        barrier.wait()
        try:
            for number in range(first, count, 8):
                task.write_piece(number, chunk(number, data, piece))
        except BaseException as exc:
            errors.append(exc)

    with Store(tmp_path) as store:
        with store.open_task(
            TASK_ID, url="https://x/", content_length=len(data), piece_length=piece
        ) as task:
            threads = [threading.Thread(target=worker, args=(task, i)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert task.finished_pieces() == frozenset(range(count))
            assert task.read_range(0, len(data)) == data
        with store.open_task(  # re-verification agrees with what the threads recorded
            TASK_ID, url="https://x/", content_length=len(data), piece_length=piece
        ) as task:
            assert task.is_complete


def test_deliver_requires_a_complete_task(tmp_path: Path) -> None:
    with Store(tmp_path / "s") as store, open_task(store) as task:
        write(task, 0, 1)
        with pytest.raises(StorageError, match="not complete \\(2 of 3 pieces\\)"):
            store.deliver(TASK_ID, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        with pytest.raises(StorageError, match="not in the store"):
            store.deliver("e5" * 32, tmp_path / "out")


@pytest.mark.parametrize(
    ("hard_link", "method"), [(True, DeliveryMethod.HARD_LINK), (False, DeliveryMethod.COPY)]
)
def test_deliver_a_complete_task(tmp_path: Path, hard_link: bool, method: DeliveryMethod) -> None:
    out = tmp_path / "dir" / "model.bin"
    with Store(tmp_path / "s") as store:
        with open_task(store) as task:
            write(task, 0, 1, 2)
        assert store.deliver(TASK_ID, out, hard_link=hard_link) is method
        same_inode = out.stat().st_ino == store.content_path(TASK_ID).stat().st_ino
    assert same_inode is hard_link
    assert out.read_bytes() == DATA
