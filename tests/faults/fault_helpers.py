"""Shared by the fault suite: real processes, a real small disk, one-line error checks.

Every case here starts real processes on loopback (``LocalCluster``: scheduler, daemons,
an ``OriginServer`` with scripted faults) and checks what a user sees: exit codes, the bytes
delivered, and the one line a failure prints. See ``docs/reliability.md`` for the matrix.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly.demo.cluster import Completed
from damselfly.storage.store import Store

MiB = 1024 * 1024
# what a user must never see: a traceback, an exception class name, an exception group
LEAKS = re.compile(r"Traceback|ExceptionGroup|\b[A-Z][A-Za-z]*(Error|Exception)\b")


def mount_tmpfs(path: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` at ``path`` (root only), or skip the test."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small disk")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def one_error_line(run: Completed, prog: str = "dfget") -> str:
    """The single line a failed command printed; fails on anything more, or on a leak."""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"{prog}: error: "), run.stderr
    assert not LEAKS.search(lines[0]), lines[0]
    return lines[0]


def assert_all_delivered(
    runs: list[Completed], outs: list[Path], data: bytes, logs: str = ""
) -> None:
    """Every run exited 0 and wrote exactly ``data``."""
    for run, out in zip(runs, outs, strict=True):
        assert run.code == 0, run.stderr + logs
        assert out.read_bytes() == data, out


@dataclass
class Dfget:
    """The real ``dfget`` command with its own store (``DAMSELFLY_STORAGE_DIR``)."""

    store: Path
    env: dict[str, str]

    async def run(self, *args: str, timeout: float = 60) -> Completed:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "damselfly.cli.dfget", *args],
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        seconds = time.monotonic() - started
        return Completed(process.returncode, stdout.decode(), stderr.decode(), seconds)


def flip_piece_keeping_mtime(store_dir: Path, number: int) -> Path:
    """Change bytes inside piece ``number`` of the store's only task; put the mtime back."""
    with Store(store_dir) as store:
        (task,) = store.list_tasks()
        path = store.content_path(task.task_id)
    before = path.stat()
    with path.open("r+b") as content:
        content.seek(number * MiB + 1234)
        old = content.read(16)
        content.seek(number * MiB + 1234)
        content.write(bytes(b ^ 0xFF for b in old))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    return path
