"""Fixtures of the fault suite (helpers live in ``fault_helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import mount_tmpfs, unmount


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Where the first peer of a ``LocalCluster(tmp_path)`` keeps its store, on 32 MiB."""
    where = tmp_path / "nodes" / "peer-0"
    mount_tmpfs(where, "32m")
    yield where
    unmount(where)
