"""The backend contract against ``FileBackend`` on a temporary directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.backends.file import FileBackend, _os_error
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import FileUrl, SourceUrl, parse_url
from damselfly.testing.backend_contract import BackendContract


@dataclass
class FileCase:
    backend: FileBackend
    root: Path
    options: RequestOptions = field(default_factory=RequestOptions)
    supports_list: bool = True

    async def put(self, path: str, data: bytes) -> SourceUrl:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return FileUrl(str(target))

    def missing_url(self) -> SourceUrl:
        return FileUrl(str(self.root / "no" / "such" / "file.bin"))

    def dir_url(self, prefix: str) -> SourceUrl:
        return FileUrl(str(self.root / prefix))


class TestFileContract(BackendContract):
    @pytest.fixture
    async def contract_case(self, tmp_path: Path) -> AsyncIterator[FileCase]:
        backend = FileBackend()
        yield FileCase(backend, tmp_path)
        await backend.aclose()


# --- FileBackend specifics beyond the contract ---

OPTIONS = RequestOptions()


async def read(backend: FileBackend, url: SourceUrl, byte_range: ByteRange | None = None) -> bytes:
    return b"".join([chunk async for chunk in backend.get(url, byte_range, OPTIONS)])


async def test_list_follows_only_symlinks_that_stay_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not serve")
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(b"12345")
    (root / "sub" / "alias.bin").symlink_to(root / "weights.bin")
    (root / "escape").symlink_to(outside / "secret")
    (root / "escape-dir").symlink_to(outside, target_is_directory=True)
    (root / "dangling").symlink_to(root / "nowhere")
    os.mkfifo(root / "fifo")
    entries = await FileBackend().list(FileUrl(str(root)), OPTIONS)
    assert [(e.path, e.content_length) for e in entries] == [
        ("sub/alias.bin", 5),
        ("weights.bin", 5),
    ]
    assert entries[0].url == FileUrl(str(root / "sub" / "alias.bin"))


async def test_directory_is_not_a_file(tmp_path: Path) -> None:
    backend = FileBackend()
    with pytest.raises(SourceProtocolError, match="is a directory"):
        await backend.stat(FileUrl(str(tmp_path)), OPTIONS)
    with pytest.raises(SourceProtocolError, match="is a directory"):
        await read(backend, FileUrl(str(tmp_path)))


async def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SourceProtocolError, match="not a regular file"):
        await read(FileBackend(), FileUrl(str(tmp_path / "fifo")))


async def test_list_of_a_file_or_missing_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    backend = FileBackend()
    with pytest.raises(SourceProtocolError, match="not a directory"):
        await backend.list(FileUrl(str(tmp_path / "f")), OPTIONS)
    with pytest.raises(SourceNotFoundError):
        await backend.list(FileUrl(str(tmp_path / "missing")), OPTIONS)


async def test_missing_parent_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(SourceNotFoundError, match="no such file"):
        await FileBackend().stat(FileUrl(str(tmp_path / "f" / "child")), OPTIONS)


async def test_range_past_the_end_names_both_lengths(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    url = FileUrl(str(tmp_path / "f"))
    with pytest.raises(SourceProtocolError) as caught:
        await read(FileBackend(), url, ByteRange(4, 10))
    assert str(caught.value) == (
        f"{url}: expected 10 bytes, got 6 (file is shorter than the range)"
    )


async def test_ranges_and_stat_fields(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    (tmp_path / "f").write_bytes(data)
    url = FileUrl(str(tmp_path / "f"))
    backend = FileBackend()
    assert await read(backend, url, ByteRange(300, 7)) == data[300:307]
    stat = await backend.stat(url, OPTIONS)
    info = (tmp_path / "f").stat()
    assert stat.etag == f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
    assert stat.last_modified is not None
    assert stat.last_modified.endswith("GMT")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_permission_denied_is_an_auth_error(tmp_path: Path) -> None:
    target = tmp_path / "private"
    target.write_bytes(b"x")
    target.chmod(0)
    with pytest.raises(SourceAuthError, match="permission denied"):
        await read(FileBackend(), FileUrl(str(target)))


async def test_other_schemes_are_refused() -> None:
    with pytest.raises(SourceProtocolError, match="not a file:// URL"):
        await FileBackend().stat(parse_url("https://h/x"), OPTIONS)


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (FileNotFoundError(2, "No such file or directory"), SourceNotFoundError, "no such file"),
        (NotADirectoryError(20, "Not a directory"), SourceNotFoundError, "no such file"),
        (PermissionError(13, "Permission denied"), SourceAuthError, "permission denied"),
        (IsADirectoryError(21, "Is a directory"), SourceProtocolError, "is a directory"),
        (OSError(5, "Input/output error"), BackendError, "Input/output error"),
    ],
)
def test_os_errors_map_to_backend_errors(
    error: OSError, expected: type[BackendError], message: str
) -> None:
    # The mapping itself, since a root test runner cannot provoke EACCES on a real file.
    mapped = _os_error(FileUrl("/data/x"), error)
    assert type(mapped) is expected
    assert str(mapped).startswith(f"file:///data/x: {message}")
