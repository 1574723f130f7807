"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def other_fs_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on another file system than ``tmp_path`` (a tmpfs), or the test skips."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    where = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if os.stat(where).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the store")
        yield where
    finally:
        shutil.rmtree(where)
