"""deliver_file: atomic output, hard link or copy, and every refusal leaving nothing behind."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.core.errors import OutputError
from damselfly.storage import output
from damselfly.storage.output import DeliveryMethod, deliver_file

DATA = os.urandom(300_000)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "content-file"
    path.parent.mkdir()
    path.write_bytes(DATA)
    path.chmod(0o600)
    return path


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".damselfly-" in p.name)


@pytest.mark.usefixtures("umask_022")
def test_hard_link_on_same_filesystem(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "model.bin"
    assert deliver_file(src, dest, overwrite=False, hard_link=True) is DeliveryMethod.HARD_LINK
    assert dest.stat().st_ino == src.stat().st_ino
    assert dest.read_bytes() == DATA
    assert dest.stat().st_mode & 0o777 == 0o644
    assert leftovers(dest.parent) == []


@pytest.mark.usefixtures("umask_022")
def test_copy_when_hard_link_is_off(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    assert deliver_file(src, dest, overwrite=False, hard_link=False) is DeliveryMethod.COPY
    assert dest.stat().st_ino != src.stat().st_ino
    assert dest.read_bytes() == DATA
    assert dest.stat().st_mode & 0o777 == 0o644
    assert leftovers(tmp_path) == []


def test_mode_follows_the_umask(src: Path, tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        deliver_file(src, tmp_path / "copy", overwrite=False, hard_link=False)
        deliver_file(src, tmp_path / "link", overwrite=False, hard_link=True)
    finally:
        os.umask(old)
    assert (tmp_path / "copy").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "link").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("hard_link", [True, False])
def test_existing_dest_without_overwrite_is_untouched(
    src: Path, tmp_path: Path, hard_link: bool
) -> None:
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists \\(use --overwrite\\)") as info:
        deliver_file(src, dest, overwrite=False, hard_link=hard_link)
    assert info.value.path == str(dest)
    assert dest.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("hard_link", [True, False])
def test_overwrite_replaces(src: Path, tmp_path: Path, hard_link: bool) -> None:
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old")
    deliver_file(src, dest, overwrite=True, hard_link=hard_link)
    assert dest.read_bytes() == DATA
    assert leftovers(tmp_path) == []


def test_overwrite_of_the_same_inode_leaves_no_temp(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    deliver_file(src, dest, overwrite=False, hard_link=True)
    # rename(2) between two links to one inode does nothing; the temp must still go.
    assert deliver_file(src, dest, overwrite=True, hard_link=True) is DeliveryMethod.HARD_LINK
    assert dest.read_bytes() == DATA
    assert leftovers(tmp_path) == []


def test_dest_is_a_directory(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dir"
    dest.mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        deliver_file(src, dest, overwrite=True, hard_link=True)
    assert list(dest.iterdir()) == []
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("sub", ["x", "deeper/x"])
def test_parent_is_a_file(src: Path, tmp_path: Path, sub: str) -> None:
    # Root ignores permission bits, so "cannot write the parent" is tested as "a path
    # component is a regular file" here, and with a read-only bind mount in
    # tests/integration/test_storage_filesystems.py.
    blocker = tmp_path / "regular-file"
    blocker.write_bytes(b"keep")
    with pytest.raises(OutputError, match="not a directory"):
        deliver_file(src, blocker / sub, overwrite=False, hard_link=True)
    assert blocker.read_bytes() == b"keep"


def test_missing_parents_are_created(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "c" / "model.bin"
    deliver_file(src, dest, overwrite=False, hard_link=False)
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_copy_leaves_nothing(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupt: type[BaseException]
) -> None:
    def explode(src_fd: int, dst_fd: int, length: int) -> None:
        os.write(dst_fd, b"half")
        raise interrupt()

    monkeypatch.setattr(output, "_copy_fd", explode)
    dest = tmp_path / "model.bin"
    with pytest.raises((KeyboardInterrupt, OutputError)):
        deliver_file(src, dest, overwrite=False, hard_link=False)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_a_file_that_appears_meanwhile_is_not_clobbered(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "model.bin"
    real_stage = output._stage

    def stage_then_race(*args: object, **kwargs: bool) -> DeliveryMethod:
        method = real_stage(*args, **kwargs)  # type: ignore[arg-type]
        dest.write_bytes(b"someone else's")
        return method

    monkeypatch.setattr(output, "_stage", stage_then_race)
    with pytest.raises(OutputError, match="already exists"):
        deliver_file(src, dest, overwrite=False, hard_link=True)
    assert dest.read_bytes() == b"someone else's"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [True, False])
def test_filesystem_without_hard_links_gets_a_copy(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    def no_links(a: object, b: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # vfat, some FUSE mounts

    dest = tmp_path / "model.bin"
    monkeypatch.setattr(os, "link", no_links)
    assert deliver_file(src, dest, overwrite=overwrite, hard_link=True) is DeliveryMethod.COPY
    assert dest.read_bytes() == DATA
    assert leftovers(tmp_path) == []


def test_without_hard_links_an_existing_file_is_still_kept(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(a: object, b: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    dest = tmp_path / "model.bin"
    real_stage = output._stage

    def stage_then_race(*args: object, **kwargs: bool) -> DeliveryMethod:
        method = real_stage(*args, **kwargs)  # type: ignore[arg-type]
        dest.write_bytes(b"someone else's")
        return method

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(output, "_stage", stage_then_race)
    with pytest.raises(OutputError, match="already exists"):
        deliver_file(src, dest, overwrite=False, hard_link=True)
    assert dest.read_bytes() == b"someone else's"
    assert leftovers(tmp_path) == []


def test_current_umask_matches_the_process(umask_022: None) -> None:
    assert output.current_umask() == 0o022
