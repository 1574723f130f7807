"""``read_cached``: the TLS send path's read on the event loop, only from the page cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from damselfly.daemon.servers.upload_tasks import nowait_supported, read_and_hash, read_cached

DATA = os.urandom(3 * 64 * 1024)


@pytest.fixture
def fd(tmp_path: Path):
    path = tmp_path / "content"
    path.write_bytes(DATA)  # just written: in the page cache
    descriptor = os.open(path, os.O_RDONLY)
    yield descriptor
    os.close(descriptor)


def test_cached_bytes_are_read_exactly(fd: int) -> None:
    if not nowait_supported(fd):
        pytest.skip("this file system does not take RWF_NOWAIT")
    got = read_cached(fd, 1000, 64 * 1024)
    assert got == DATA[1000 : 1000 + 64 * 1024]
    assert got == read_and_hash(fd, 1000, 64 * 1024, None)


def test_bytes_past_the_end_are_none(fd: int) -> None:
    assert read_cached(fd, len(DATA) - 10, 64) is None


def test_a_descriptor_that_cannot_say_is_none() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x" * 64)
        assert not nowait_supported(read_end)
        assert read_cached(read_end, 0, 64) is None  # a pipe: the caller falls back to a thread
    finally:
        os.close(read_end)
        os.close(write_end)
