"""The real ``dfget`` command, as a subprocess, against a real local HTTP origin."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from damselfly.testing.origin import Behaviour, OriginServer
from damselfly.testing.polling import wait_until

MiB = 1024 * 1024


@pytest.fixture
async def origin():
    async with OriginServer() as server:
        yield server


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_download_is_byte_identical_with_plain_progress(tmp_path, origin, dfget):
    data = os.urandom(9 * MiB + 5)
    url = origin.put("/weights.bin", data)
    out = tmp_path / "out" / "weights.bin"
    result = await dfget.run(url, "-O", str(out), "--piece-length", "1MiB")
    assert result.code == 0, result.stderr
    assert out.read_bytes() == data
    assert "weights.bin: started (9.0 MiB)" in result.stderr
    assert "weights.bin: done" in result.stderr
    assert result.stdout == ""
    assert origin.bytes_served == len(data)


async def test_no_progress_is_silent(tmp_path, origin, dfget):
    url = origin.put("/a.bin", b"abc")
    result = await dfget.run(url, "-O", str(tmp_path / "a.bin"), "--no-progress")
    assert (result.code, result.stdout, result.stderr) == (0, "", "")


async def test_digest_checked_and_cached_copy_reused(tmp_path, origin, dfget):
    data = os.urandom(3 * MiB)
    url = origin.put("/m.bin", data)
    first = await dfget.run(
        url, "-O", str(tmp_path / "1.bin"), "--digest", f"sha256:{sha256(data)}"
    )
    assert first.code == 0, first.stderr
    served = origin.bytes_served
    second = await dfget.run(url, "-O", str(tmp_path / "2.bin"))
    assert second.code == 0, second.stderr
    assert origin.bytes_served == served  # only a HEAD: the store had every piece
    assert (tmp_path / "2.bin").read_bytes() == data


async def test_resume_after_kill_9(tmp_path, origin, dfget):
    data = os.urandom(4 * MiB)
    url = origin.put("/slow.bin", data)
    origin.set_behaviour(Behaviour(rate=MiB), "/slow.bin")
    out = tmp_path / "out" / "slow.bin"
    args = (url, "-O", str(out), "--piece-length", "256KiB", "--concurrent-pieces", "2")
    process = await dfget.start(*args)
    await wait_until(lambda: origin.bytes_served >= MiB + 256 * 1024, within=20, interval=0.02)
    await asyncio.sleep(0.2)  # let the pieces that arrived reach the store
    process.kill()
    await process.wait()
    assert leftovers(out.parent) == []
    first_run_bytes = origin.bytes_served
    origin.clear_behaviours()
    origin.reset_stats()
    result = await dfget.run(*args)
    assert result.code == 0, result.stderr
    assert out.read_bytes() == data
    assert "already stored" in result.stderr
    assert origin.bytes_served <= len(data) - MiB  # at least 1 MiB came from the store
    assert first_run_bytes + origin.bytes_served >= len(data)


async def test_ctrl_c_leaves_nothing_and_keeps_pieces(tmp_path, origin, dfget):
    data = os.urandom(4 * MiB)
    url = origin.put("/slow.bin", data)
    # per response: the whole file takes >= 4 s, so the interrupt lands mid-download even on
    # a loaded machine (at MiB/s it sometimes landed after the end: exit 0, a whole file)
    origin.set_behaviour(Behaviour(rate=MiB // 2), "/slow.bin")
    out = tmp_path / "out" / "slow.bin"
    args = (url, "-O", str(out), "--piece-length", "256KiB", "--concurrent-pieces", "2")
    process = await dfget.start(*args)
    await wait_until(lambda: origin.bytes_served >= MiB // 2, within=20, interval=0.02)
    await asyncio.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 130
    assert "interrupted" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert leftovers(out.parent) == []
    origin.clear_behaviours()
    origin.reset_stats()
    result = await dfget.run(*args)
    assert result.code == 0, result.stderr
    assert out.read_bytes() == data
    assert origin.bytes_served < len(data)


async def test_origin_ignoring_range_still_gives_correct_bytes(tmp_path, origin, dfget):
    data = os.urandom(5 * MiB)
    url = origin.put("/norange.bin", data)
    origin.set_behaviour(Behaviour(ignore_range=True), "/norange.bin")
    result = await dfget.run(url, "-O", str(tmp_path / "n.bin"), "--piece-length", "1MiB")
    assert result.code == 0, result.stderr
    assert (tmp_path / "n.bin").read_bytes() == data


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dfget_is_installed_as_a_console_script():
    dfget = Path(sys.executable).with_name("dfget")
    result = subprocess.run([str(dfget), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("dfget ")


async def test_output_is_hard_linked_from_the_store(tmp_path, origin, dfget):
    url = origin.put("/h.bin", os.urandom(MiB))
    out = tmp_path / "h.bin"
    result = await dfget.run(url, "-O", str(out), "--force-hard-link")
    assert result.code == 0, result.stderr
    assert out.stat().st_nlink == 2  # the store's content file and the output


async def test_output_is_the_stores_file_unless_no_hard_link(tmp_path, origin, dfget):
    data = os.urandom(MiB)
    url = origin.put("/l.bin", data)
    linked, copied = tmp_path / "linked.bin", tmp_path / "copied.bin"
    result = await dfget.run(url, "-O", str(copied), "--no-hard-link")  # first: could link
    assert result.code == 0, result.stderr
    assert (await dfget.run(url, "-O", str(linked))).code == 0
    assert linked.stat().st_nlink == 2  # one copy of the bytes on disk
    assert copied.stat().st_nlink == 1
    assert copied.read_bytes() == linked.read_bytes() == data


async def test_force_and_no_hard_link_together_are_refused(tmp_path, origin, dfget):
    url = origin.put("/c.bin", b"data")
    out = tmp_path / "c.bin"
    result = await dfget.run(url, "-O", str(out), "--force-hard-link", "--no-hard-link")
    assert result.code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--no-hard-link" in result.stderr
    assert origin.request_count() == 0
    assert not out.exists()


async def test_force_hard_link_across_filesystems_fails_before_downloading(tmp_path, origin, dfget):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different filesystem than the test directory")
    store = Path(tempfile.mkdtemp(dir=shm))
    try:
        url = origin.put("/h.bin", b"data")
        out = tmp_path / "h.bin"
        result = await dfget.run(
            url, "-O", str(out), "--force-hard-link", "--storage-dir", str(store)
        )
        assert result.code == 1
        assert "cannot hard-link" in result.stderr
        assert origin.request_count() == 0
        assert not out.exists()
    finally:
        shutil.rmtree(store, ignore_errors=True)


async def test_content_for_task_id_shares_one_task_between_urls(tmp_path, origin, dfget):
    data = os.urandom(MiB)
    first = origin.put("/a/model.bin", data)
    second = origin.put("/b/model.bin", data)
    flag = ("--content-for-calculating-task-id", "model-v1")
    assert (await dfget.run(first, "-O", str(tmp_path / "1"), *flag)).code == 0
    assert (await dfget.run(second, "-O", str(tmp_path / "2"), *flag)).code == 0
    assert origin.request_count("/b/model.bin", "GET") == 0
    assert (tmp_path / "2").read_bytes() == data
