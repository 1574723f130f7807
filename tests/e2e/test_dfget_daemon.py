"""The real ``dfget`` handing its download to a real daemon process (the local API alone:
``python -m damselfly.testing.local_api_server``), and falling back to standalone without one."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly.demo.hub_repos import HubRepo
from damselfly.storage.store import Store
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.origin import OriginServer

MiB = 1024 * 1024


@dataclass
class Daemon:
    socket: Path
    store: Path
    process: asyncio.subprocess.Process

    def task_count(self) -> int:
        with Store(self.store) as store:
            return len(store.list_tasks())

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 10)


@pytest.fixture
async def origin():
    async with OriginServer() as server:
        yield server


@pytest.fixture
async def daemon(tmp_path) -> AsyncIterator[Daemon]:
    run_dir = Path(tempfile.mkdtemp(prefix="dfd-", dir="/tmp"))  # short socket path
    socket_path = run_dir / "dfdaemon.sock"
    # The daemon's own environment knows no hub: a request carries its caller's.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "DFGET"))}
    env["HOME"] = str(tmp_path / "daemon-home")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "damselfly.testing.local_api_server",
        "--socket",
        str(socket_path),
        "--storage-dir",
        str(tmp_path / "daemon-store"),
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line.decode() == f"listening on {socket_path}\n"
    running = Daemon(socket_path, tmp_path / "daemon-store", process)
    try:
        yield running
    finally:
        await running.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def shape(stderr: str) -> str:
    """Progress lines with sizes, times and speeds blanked: what both modes must share."""
    return re.sub(r"\d+(\.\d+)? (s|B|KiB|MiB|GiB)(/s)?", "N", stderr)


def dfget_task_count(store: Path) -> int:
    if not store.exists():
        return 0
    with Store(store) as opened:
        return len(opened.list_tasks())


async def test_dfget_through_the_daemon_then_standalone_look_the_same(
    tmp_path, origin, dfget, daemon
):
    data = os.urandom(6 * MiB + 3)
    url = origin.put("/w.bin", data)
    via = await dfget.run(url, "-O", str(tmp_path / "a" / "w.bin"), "-e", str(daemon.socket))
    assert via.code == 0, via.stderr
    assert (tmp_path / "a" / "w.bin").read_bytes() == data
    assert "w.bin: started (6.0 MiB)" in via.stderr
    assert via.stdout == ""
    assert (daemon.task_count(), dfget_task_count(dfget.store)) == (1, 0)

    served = origin.bytes_served
    again = await dfget.run(url, "-O", str(tmp_path / "b" / "w.bin"), "-e", str(daemon.socket))
    assert again.code == 0, again.stderr
    assert origin.bytes_served == served  # from the daemon's store
    assert "w.bin: done, 6.0 MiB, all from the local store" in again.stderr
    assert (tmp_path / "b" / "w.bin").read_bytes() == data

    url2 = origin.put("/c/w.bin", data)
    alone = await dfget.run(
        url2, "-O", str(tmp_path / "c" / "w.bin"), "-e", str(daemon.socket), "--standalone"
    )
    assert alone.code == 0, alone.stderr
    assert (daemon.task_count(), dfget_task_count(dfget.store)) == (1, 1)  # not asked
    assert shape(alone.stderr) == shape(via.stderr)
    assert shape(via.stderr) == "w.bin: started (N)\nw.bin: done, N in N (N)\n"


async def test_without_the_named_daemon_dfget_warns_once_and_falls_back(
    tmp_path, origin, dfget, daemon
):
    await daemon.stop()
    assert not daemon.socket.exists()  # removed on a clean stop
    url = origin.put("/f.bin", b"payload" * 1000)
    result = await dfget.run(url, "-O", str(tmp_path / "f.bin"), "-e", str(daemon.socket))
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"dfget: warning: no dfdaemon answers at {daemon.socket} (No such file or directory); "
        "downloading without it"
    ]
    assert (tmp_path / "f.bin").read_bytes() == b"payload" * 1000
    assert dfget_task_count(dfget.store) == 1


async def test_daemon_errors_are_dfget_errors(tmp_path, origin, dfget, daemon):
    missing = await dfget.run(
        origin.url("/nope"), "-O", str(tmp_path / "x"), "-e", str(daemon.socket)
    )
    assert missing.code == 1
    assert missing.error_lines[-1].startswith("dfget: error: ")
    assert "404" in missing.error_lines[-1]
    url = origin.put("/g.bin", b"g")
    refused = await dfget.run(
        url, "-O", str(tmp_path / "g"), "-e", str(daemon.socket), "--disable-back-to-source"
    )
    assert refused.code == 2
    assert "--disable-back-to-source" in refused.error_lines[-1]
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "g").exists()


async def test_disable_back_to_source_without_a_daemon_is_a_usage_error(tmp_path, dfget):
    args = ("https://127.0.0.1:9/f", "-O", str(tmp_path / "f"), "--disable-back-to-source")
    result = await dfget.run(*args, "-e", str(tmp_path / "none.sock"))
    assert result.code == 2
    assert "no dfdaemon is answering" in result.stderr


async def test_hub_cache_through_the_daemon_uses_the_callers_environment(tmp_path, dfget, daemon):
    files = {"config.json": b'{"a": 1}\n', "model.bin": os.urandom(2 * MiB)}
    repo = HubRepo("acme/tiny", files, lfs_threshold=MiB)
    async with HfTestHub([repo]) as hub:
        for name in [n for n in dfget.env if n.startswith(("HF_", "HUGGING"))]:
            del dfget.env[name]
        hf_home = tmp_path / "home" / "hf"
        dfget.env.update(HOME=str(tmp_path / "home"), HF_HOME=str(hf_home))
        dfget.env["HF_ENDPOINT"] = hub.endpoint
        result = await dfget.run(
            "hf://acme/tiny", "-r", "--hf-cache", "--no-progress", "-e", str(daemon.socket)
        )
    assert result.code == 0, result.stderr
    snapshot = hf_home / "hub/models--acme--tiny/snapshots" / repo.refs["main"]
    assert result.stdout == f"{snapshot}\n"
    assert {p.name: p.read_bytes() for p in snapshot.iterdir()} == files
    assert (daemon.task_count(), dfget_task_count(dfget.store)) == (2, 0)
    assert not (tmp_path / "daemon-home").exists()
