"""``storage/file_systems.py``: which copies move bytes (and so are worth avoiding)."""

from __future__ import annotations

import os

import pytest

from damselfly.storage import file_systems
from damselfly.storage.file_systems import copies_bytes, mount_type


def test_the_mount_type_of_a_device_is_read_from_mountinfo() -> None:
    assert mount_type(os.stat("/proc").st_dev) == "proc"


def test_an_unmounted_device_has_no_type() -> None:
    assert mount_type(os.makedev(4095, 1048575)) is None


def test_across_file_systems_a_copy_moves_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_systems, "mount_type", lambda dev: "xfs")
    assert copies_bytes(os.makedev(8, 1), os.makedev(8, 2))


@pytest.mark.parametrize(
    ("kind", "moves"),
    [("tmpfs", True), ("ext4", True), ("xfs", False), ("btrfs", False), (None, False)],
)
def test_within_one_file_system_it_depends_on_the_kind(
    monkeypatch: pytest.MonkeyPatch, kind: str | None, moves: bool
) -> None:
    monkeypatch.setattr(file_systems, "mount_type", lambda dev: kind)
    assert copies_bytes(os.makedev(8, 1), os.makedev(8, 1)) is moves
