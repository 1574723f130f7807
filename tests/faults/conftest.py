"""Fixtures of the fault suite (helpers live in ``fault_helpers.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import Dfget, mount_tmpfs, unmount


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Where the first peer of a ``LocalCluster(tmp_path)`` keeps its store, on 32 MiB."""
    where = tmp_path / "nodes" / "peer-0"
    mount_tmpfs(where, "32m")
    yield where
    unmount(where)


@pytest.fixture
def dfget(tmp_path: Path) -> Dfget:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFGET_")}
    env["DAMSELFLY_STORAGE_DIR"] = str(tmp_path / "store")
    return Dfget(store=tmp_path / "store", env=env)
