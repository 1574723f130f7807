"""A store that heals on a real small disk (a 32 MiB tmpfs; needs root to mount it).

Refused before it starts when a task cannot fit, GC by free space and by age before refusing,
metadata still writable when someone else fills the disk, a failed task's space given back.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.core.errors import DiskFullError, NoSpaceError
from damselfly.storage.metadata import TaskMeta, TaskState
from damselfly.storage.space import SpaceReserve
from damselfly.storage.sqlite_metadata import SqliteMetadataStore
from damselfly.storage.store import Store, TaskStorage

MiB = 1024 * 1024
PIECE = MiB


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("needs root and tmpfs mounts to fill a disk")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def tid(name: str) -> str:
    return (name * 64)[:64]


def fill_task(store: Store, name: str, length: int) -> None:
    with store.open_task(
        tid(name), url="https://x/", content_length=length, piece_length=PIECE
    ) as t:
        for number in range(t.piece_count):
            t.write_piece(number, os.urandom(min(PIECE, length - number * PIECE)))
        t.mark_succeeded()


def write_all(task: TaskStorage) -> None:
    for number in range(task.piece_count):
        task.write_piece(number, os.urandom(PIECE))


def test_a_task_that_cannot_fit_is_refused_before_it_starts(disk: Path) -> None:
    with Store(disk / "store") as store:
        with pytest.raises(NoSpaceError) as info:
            store.open_task(tid("a"), url="https://x/", content_length=40 * MiB, piece_length=PIECE)
        message = str(info.value)
        assert message.startswith(f"no space for {40 * MiB} bytes in {disk / 'store'} (free ")
        assert "\n" not in message
        assert not store.content_path(tid("a")).exists()
        fill_task(store, "b", 4 * MiB)  # the next one that fits succeeds


def test_old_tasks_are_evicted_for_free_space_before_refusing(disk: Path) -> None:
    with Store(disk / "store") as store:
        for name in "abc":
            fill_task(store, name, 8 * MiB)
        fill_task(store, "d", 12 * MiB)  # needs a and b (least recently used) gone
        held = {task.task_id for task in store.list_tasks()}
        assert tid("d") in held
        assert tid("c") in held
        assert tid("a") not in held


def test_tasks_past_their_age_are_evicted(disk: Path) -> None:
    (disk / "store").mkdir()
    old = SqliteMetadataStore(disk / "store" / "metadata.db", clock=lambda: 1000.0)
    with Store(disk / "store", metadata=old) as store:
        fill_task(store, "a", MiB)
    old.close()
    with Store(disk / "store", max_age_seconds=3600) as store:
        fill_task(store, "b", MiB)
        assert [task.task_id for task in store.list_tasks()] == [tid("b")]


def test_a_full_disk_still_records_the_failure_and_gives_the_space_back(disk: Path) -> None:
    store_dir = disk / "store"
    with Store(store_dir, quota_bytes=24 * MiB) as store:
        task = store.open_task(
            tid("a"), url="https://x/", content_length=16 * MiB, piece_length=PIECE
        )
        assert (store_dir / "metadata.reserve").exists()
        filler = disk / "filler"  # someone else fills the disk meanwhile
        filler.write_bytes(bytes(store.free_bytes() - 4 * MiB))
        with task:
            with pytest.raises(DiskFullError):
                write_all(task)
            task.release_space()
        meta = store.get_task(tid("a"))
        assert meta is not None
        assert meta.state is TaskState.FAILED
        assert store.recorded_pieces(tid("a")) == []
        assert store.content_path(tid("a")).stat().st_size == 0
        filler.unlink()
        fill_task(store, "b", 4 * MiB)
        assert (store_dir / "metadata.reserve").exists()  # re-created once there was room
        assert store.usage_bytes() <= 24 * MiB


def fill_the_disk(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left"):
            _write_forever(fd)
    finally:
        os.close(fd)


def _write_forever(fd: int) -> None:
    while os.write(fd, bytes(64 * 1024)):
        pass


def test_metadata_writes_on_a_full_disk_use_the_reserve(disk: Path) -> None:
    reserve = SpaceReserve(disk / "metadata.reserve")
    assert reserve.ensure()
    meta = SqliteMetadataStore(disk / "metadata.db", reserve=reserve)
    fill_the_disk(disk / "filler")
    try:
        for number in range(30):  # each commit appends WAL pages the full disk has not got
            meta.task_registered(
                TaskMeta(tid(f"{number:04}"), "u", 1, 1, TaskState.PENDING, None, 0, 0)
            )
        assert not reserve.present()
        assert len(meta.tasks_by_access()) == 30
    finally:
        meta.close()
