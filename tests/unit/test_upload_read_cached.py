"""``read_cached``: the TLS send path's read on the event loop, only where it cannot wait for a
disk (the page cache with ``RWF_NOWAIT``, or a memory file system)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from damselfly.daemon.servers import upload_tasks
from damselfly.daemon.servers.upload_tasks import loop_read_flags, read_and_hash, read_cached

DATA = os.urandom(3 * 64 * 1024)
SHM = Path("/dev/shm")


def _open(path: Path) -> int:
    path.write_bytes(DATA)  # just written: in the page cache
    return os.open(path, os.O_RDONLY)


@pytest.fixture
def fd(tmp_path: Path):
    descriptor = _open(tmp_path / "content")
    yield descriptor
    os.close(descriptor)


@pytest.fixture
def shm_fd(tmp_path: Path):
    directory = os.open(SHM, os.O_RDONLY)
    tmpfs = upload_tasks._file_system_type(directory) == 0x01021994  # TMPFS_MAGIC
    os.close(directory)
    if not tmpfs:
        pytest.skip("no tmpfs at /dev/shm")
    path = SHM / f"damselfly-test-{os.getpid()}-{tmp_path.name}"
    descriptor = _open(path)
    yield descriptor
    os.close(descriptor)
    path.unlink()


def test_cached_bytes_are_read_exactly(fd: int) -> None:
    flags = loop_read_flags(fd)
    if flags is None:
        pytest.skip("this file system does not take RWF_NOWAIT")
    got = read_cached(fd, 1000, 64 * 1024, flags)
    assert got == DATA[1000 : 1000 + 64 * 1024]
    assert got == read_and_hash(fd, 1000, 64 * 1024, None)


def test_bytes_past_the_end_are_none(fd: int) -> None:
    assert read_cached(fd, len(DATA) - 10, 64, os.RWF_NOWAIT) is None
    assert read_cached(fd, len(DATA) - 10, 64, 0) is None


def test_tmpfs_is_read_on_the_loop_without_rwf_nowait(shm_fd: int, monkeypatch) -> None:
    monkeypatch.setattr(upload_tasks, "_swap_on", lambda: False)
    assert loop_read_flags(shm_fd) == 0
    assert read_cached(shm_fd, 7, 64 * 1024, 0) == DATA[7 : 7 + 64 * 1024]


def test_tmpfs_with_swap_on_goes_to_a_thread(shm_fd: int, monkeypatch) -> None:
    monkeypatch.setattr(upload_tasks, "_swap_on", lambda: True)
    assert loop_read_flags(shm_fd) != 0  # None (this kernel) or RWF_NOWAIT (a later one)


def test_a_descriptor_that_cannot_say_is_none() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x" * 64)
        assert loop_read_flags(read_end) is None
        assert read_cached(read_end, 0, 64, os.RWF_NOWAIT) is None  # a pipe: a thread instead
    finally:
        os.close(read_end)
        os.close(write_end)
