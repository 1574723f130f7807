"""Bad input: one clear line naming the URL and the cause, the right exit code, nothing left at
-O, and no traceback unless --log-level debug."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from damselfly.testing.origin import Behaviour, OriginServer

MiB = 1024 * 1024


@pytest.fixture
async def origin():
    async with OriginServer() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line_error(result, *fragments: str) -> None:
    lines = [line for line in result.error_lines if line.startswith("dfget:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dfget: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("no-scheme.example/file", "scheme"),
        ("ftp://host/file", "scheme"),
        ("https:///file", "host"),
        ("https://host:99999/file", "port"),
        ("s3://UPPER_bucket/key", "bucket"),
        ("hf://only-owner", "repository"),
    ],
)
async def test_malformed_urls_are_usage_errors(tmp_path, dfget, url, part):
    result = await dfget.run(url, "-O", str(tmp_path / "x"))
    assert result.code == 2
    assert_one_line_error(result, url, part)
    assert not (tmp_path / "x").exists()


async def test_missing_output_flag_is_a_usage_error(dfget):
    result = await dfget.run("https://example.invalid/x")
    assert result.code == 2
    assert "-O/--output is required" in result.stderr


async def test_unreachable_host(tmp_path, dfget):
    url = f"http://127.0.0.1:{closed_port()}/file.bin"
    result = await dfget.run(url, "-O", str(tmp_path / "x"), "--origin-retries", "1")
    assert result.code == 1
    assert_one_line_error(result, url)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("status", "words"), [(401, "401"), (403, "403"), (404, "404")])
async def test_http_errors(tmp_path, origin, dfget, status, words):
    url = origin.put("/f.bin", b"data")
    origin.set_behaviour(Behaviour(status=status), "/f.bin")
    result = await dfget.run(url, "-O", str(tmp_path / "x"))
    assert result.code == 1
    assert_one_line_error(result, url, words)
    assert not (tmp_path / "x").exists()


async def test_server_error_after_retries(tmp_path, origin, dfget):
    url = origin.put("/f.bin", b"data")
    origin.set_behaviour(Behaviour(status=500), "/f.bin")
    result = await dfget.run(url, "-O", str(tmp_path / "x"), "--origin-retries", "1")
    assert result.code == 1
    assert_one_line_error(result, url, "500")
    assert origin.request_count("/f.bin") == 2


async def test_short_body(tmp_path, origin, dfget):
    url = origin.put("/short.bin", os.urandom(2 * MiB))
    origin.set_behaviour(Behaviour(short_body=1000), "/short.bin")
    result = await dfget.run(url, "-O", str(tmp_path / "x"), "--origin-retries", "0")
    assert result.code == 1
    assert_one_line_error(result, url, "bytes")
    assert not (tmp_path / "x").exists()


async def test_wrong_digest(tmp_path, origin, dfget):
    url = origin.put("/f.bin", os.urandom(MiB))
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    result = await dfget.run(url, "-O", str(tmp_path / "x"), "--digest", wrong)
    assert result.code == 1
    assert_one_line_error(result, url, "digest mismatch", wrong)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("digest", ["sha256:xyz", "md4:00", "sha256"])
async def test_malformed_digest(tmp_path, origin, dfget, digest):
    url = origin.put("/f.bin", b"x")
    result = await dfget.run(url, "-O", str(tmp_path / "x"), "--digest", digest)
    assert result.code == 2
    assert_one_line_error(result, "digest")


async def test_output_exists(tmp_path, origin, dfget):
    url = origin.put("/f.bin", b"new")
    target = tmp_path / "x"
    target.write_bytes(b"old")
    result = await dfget.run(url, "-O", str(target))
    assert result.code == 1
    assert_one_line_error(result, str(target), "already exists")
    assert target.read_bytes() == b"old"
    assert origin.request_count() == 0


async def test_output_is_a_directory(tmp_path, origin, dfget):
    url = origin.put("/f.bin", b"new")
    result = await dfget.run(url, "-O", str(tmp_path), "--overwrite")
    assert result.code == 1
    assert_one_line_error(result, str(tmp_path), "is a directory")


async def test_output_parent_is_a_file(tmp_path, origin, dfget):
    url = origin.put("/f.bin", b"new")
    (tmp_path / "file").write_text("x")
    result = await dfget.run(url, "-O", str(tmp_path / "file" / "out"))
    assert result.code == 1
    assert_one_line_error(result, "not a directory")


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "size=2m"):
        pytest.skip("needs root and tmpfs mounts to fill a disk")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_disk_fills_mid_download(small_disk, origin, dfget):
    url = origin.put("/big.bin", os.urandom(4 * MiB))
    out = small_disk / "out" / "big.bin"
    result = await dfget.run(
        url, "-O", str(out), "--storage-dir", str(small_disk / "store"), "--piece-length", "512KiB"
    )
    assert result.code == 1
    assert_one_line_error(result, url)
    # refused before it starts ("no space for N bytes"), or, should the disk fill anyway,
    # the content file or the metadata database is the first to hit the full disk
    assert re.search(r"no space for 4194304 bytes|no space left|disk full", result.stderr)
    assert not out.exists()


@pytest.fixture
def read_only_dir(tmp_path):
    target = tmp_path / "ro"
    if os.geteuid() != 0 or not _mount_tmpfs(target, "ro,size=1m"):
        pytest.skip("needs root and tmpfs mounts for a read-only directory")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


async def test_output_unwritable(read_only_dir, origin, dfget):
    url = origin.put("/f.bin", b"data")
    result = await dfget.run(url, "-O", str(read_only_dir / "f.bin"))
    assert result.code == 1
    assert_one_line_error(result, str(read_only_dir / "f.bin"))
    assert leftovers(read_only_dir) == []


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_debug_log_level_shows_the_traceback(tmp_path, dfget):
    url = f"http://127.0.0.1:{closed_port()}/file.bin"
    result = await dfget.run(
        url, "-O", str(tmp_path / "x"), "--log-level", "debug", "--origin-retries", "0"
    )
    assert result.code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("dfget: error: ")
