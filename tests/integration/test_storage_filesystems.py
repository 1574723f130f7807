"""Real filesystem edges: a full disk, a read-only mount, a second filesystem.

These need root to mount a 1 MiB tmpfs or a read-only bind mount; they skip with the reason
when mounting is not possible. Root ignores permission bits, so "the output's parent is not
writable" is tested with a read-only bind mount (EROFS applies to root too).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.core.errors import DiskFullError, OutputError
from damselfly.download.staged_delivery import StagedDelivery
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.output import DeliveryMethod, deliver_file
from damselfly.storage.sqlite_metadata import SqliteMetadataStore
from damselfly.storage.staging import StagedOutput
from damselfly.storage.store import Store, TaskStorage

MiB = 1024 * 1024


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(args)}): {result.stderr.strip()}")


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tiny"
    where.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where))
    yield where
    unmount(where)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "ro"
    where.mkdir()
    mount("--bind", str(where), str(where))
    try:
        mount("-o", "remount,bind,ro", str(where))
        yield where
    finally:
        unmount(where)


def leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if ".damselfly-" in name]


def test_write_piece_on_a_full_disk(small_tmpfs: Path, tmp_path: Path) -> None:
    piece = 256 * 1024
    meta = SqliteMetadataStore(tmp_path / "metadata.db")
    with Store(small_tmpfs / "store", metadata=meta) as store:
        task = store.open_task(
            "f6" * 32, url="https://x/", content_length=3 * piece, piece_length=piece
        )
        # another writer takes the space the admission check saw
        (small_tmpfs / "filler").write_bytes(bytes(store.free_bytes() - piece - piece // 2))
        written: list[int] = []

        def write_all() -> None:
            for number in range(3):
                task.write_piece(number, os.urandom(piece))
                written.append(number)

        with task, pytest.raises(DiskFullError) as info:
            write_all()
        assert 1 <= len(written) < 3
        assert str(task.content_path) in str(info.value)
        assert info.value.errno == errno.ENOSPC
        failed = len(written)
        recorded = {p.number for p in meta.pieces("f6" * 32)}
        assert recorded == set(written)
        assert failed not in recorded
    meta.close()


def test_copy_onto_a_full_disk_leaves_nothing(small_tmpfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(2 * MiB))
    dest = small_tmpfs / "out" / "model.bin"
    with pytest.raises(DiskFullError) as info:
        deliver_file(src, dest, overwrite=False, hard_link=True)  # EXDEV -> copy -> ENOSPC
    assert str(dest) in str(info.value)
    assert not dest.exists()
    assert leftovers(dest.parent) == []
    assert shutil.disk_usage(small_tmpfs).used < 64 * 1024  # the partial copy is gone


def test_store_deliver_onto_a_full_disk(small_tmpfs: Path, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    with Store(tmp_path / "store") as store:
        with store.open_task(
            "a7" * 32, url="https://x/", content_length=len(data), piece_length=MiB
        ) as task:
            task.write_piece(0, data[:MiB])
            task.write_piece(1, data[MiB:])
        with pytest.raises(DiskFullError):
            store.deliver("a7" * 32, small_tmpfs / "model.bin")
    assert leftovers(small_tmpfs) == []


@contextlib.contextmanager
def two_mib_task(store: Store, task_id: str) -> Iterator[TaskStorage]:
    """A complete task of two 1 MiB pieces, too big for ``small_tmpfs``."""
    data = os.urandom(2 * MiB)
    with store.open_task(
        task_id, url="https://x/", content_length=len(data), piece_length=MiB
    ) as task:
        task.write_piece(0, data[:MiB])
        task.write_piece(1, data[MiB:])
        task.mark_succeeded()
        yield task


def pieces_of(task: TaskStorage) -> list[PieceMeta]:
    return [p for n in range(task.piece_count) if (p := task.piece_meta(n)) is not None]


def test_staged_output_onto_a_full_disk(small_tmpfs: Path, tmp_path: Path) -> None:
    """Pieces staged as they come (``staging.py``): the output's disk filling is a
    ``DiskFullError`` naming the output, and the unnamed staged file goes with ``discard``."""
    dest = small_tmpfs / "model.bin"
    with Store(tmp_path / "store") as store, two_mib_task(store, "a8" * 32) as task:
        staged = StagedOutput.open(dest, overwrite=False)
        assert staged is not None
        with pytest.raises(DiskFullError) as info:
            staged.copy_pieces("a8" * 32, task.content_path, pieces_of(task))
        assert str(dest) in str(info.value)
        staged.discard()
    assert os.listdir(small_tmpfs) == []
    assert shutil.disk_usage(small_tmpfs).used < 64 * 1024


async def test_staged_delivery_onto_a_full_disk_fails_naming_the_output(
    small_tmpfs: Path, tmp_path: Path
) -> None:
    dest = small_tmpfs / "model.bin"
    with Store(tmp_path / "store") as store, two_mib_task(store, "a9" * 32) as task:
        delivery = StagedDelivery(store, dest, overwrite=False)
        try:
            for piece in pieces_of(task):
                delivery.piece_recorded(task, piece)
            with pytest.raises(DiskFullError) as info:
                await delivery.deliver("a9" * 32)
            assert str(dest) in str(info.value)
        finally:
            await delivery.aclose()
    assert os.listdir(small_tmpfs) == []


def test_read_only_parent_is_permission_denied(read_only_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    for dest in (read_only_dir / "model.bin", read_only_dir / "sub" / "model.bin"):
        with pytest.raises(OutputError, match="permission denied") as info:
            deliver_file(src, dest, overwrite=False, hard_link=True)
        assert info.value.path == str(dest)
    assert os.listdir(read_only_dir) == []


def test_cross_device_hard_link_falls_back_to_copy(other_fs_dir: Path, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    with Store(tmp_path / "store") as store:
        with store.open_task(
            "b8" * 32, url="https://x/", content_length=len(data), piece_length=MiB
        ) as task:
            for number in range(task.piece_count):
                task.write_piece(number, data[number * MiB : (number + 1) * MiB])
        dest = other_fs_dir / "model.bin"
        assert store.deliver("b8" * 32, dest, hard_link=True) is DeliveryMethod.COPY
        assert dest.stat().st_ino != store.content_path("b8" * 32).stat().st_ino
    assert dest.read_bytes() == data
    assert leftovers(other_fs_dir) == []
