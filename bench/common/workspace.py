"""A benchmark's world: a fresh directory on /dev/shm, random files, servers in processes.

Everything a benchmark writes (sources, outputs, piece stores, caches, logs) lives under one
``/dev/shm/damselfly-bench-*`` directory, so no run touches the root disk and one ``rmtree``
cleans up. Origins run as separate processes that print a banner line once they listen;
``server_process`` starts one, waits for the banner and always stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.measure import stop_process, tail
from damselfly.core.units import format_size

SHM = Path("/dev/shm")
WRITE_CHUNK_LENGTH = 16 * 1024 * 1024


class BenchError(Exception):
    """A benchmark that cannot give a true figure: a failed run, a corrupt output."""


@contextlib.contextmanager
def shm_directory(*, keep: bool) -> Iterator[Path]:
    """A fresh directory on /dev/shm, removed on exit (even on Ctrl-C) unless ``keep``."""
    if not SHM.is_dir():
        raise BenchError("/dev/shm is missing: the benchmark keeps its data in memory only")
    root = Path(tempfile.mkdtemp(prefix="damselfly-bench-", dir=SHM))
    try:
        yield root
    finally:
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def check_room(root: Path, needed: int) -> None:
    free = shutil.disk_usage(root).free
    if free < needed:
        raise BenchError(f"/dev/shm has {format_size(free)} free; {format_size(needed)} needed")


def write_random(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``; returns their sha256, computed while writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    with path.open("wb") as sink:
        for offset in range(0, size, WRITE_CHUNK_LENGTH):
            chunk = os.urandom(min(WRITE_CHUNK_LENGTH, size - offset))
            hasher.update(chunk)
            sink.write(chunk)
    return hasher.hexdigest()


def sha256_of(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def free_port() -> int:
    """A loopback port free right now (a server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def remove(*paths: Path) -> None:
    """Delete files and directories if present (a run's cold state)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (``/proc/<pid>/stat``); 0 once gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rpartition(")")[2].split()  # after "pid (comm)"; utime is field 14
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Server:
    """A server process that has announced itself; ``banner`` is its matched first line."""

    pid: int
    banner: re.Match[str]

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


@contextlib.contextmanager
def server_process(
    argv: Sequence[str], *, log_path: Path, banner: re.Pattern[str], start_timeout: float
) -> Iterator[Server]:
    """Run ``argv`` (stderr to ``log_path``) until the block ends; its first stdout line
    must match ``banner`` within ``start_timeout`` seconds."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        what = " ".join(Path(arg).name if i == 0 else arg for i, arg in enumerate(argv[:3]))
        yield Server(process.pid, _wait_for_banner(process, banner, start_timeout, what, log_path))
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def _wait_for_banner(
    process: subprocess.Popen[str],
    banner: re.Pattern[str],
    timeout: float,
    what: str,
    log_path: Path,
) -> re.Match[str]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=timeout)
    line = process.stdout.readline() if ready else ""
    match = banner.search(line)
    if match is None:
        detail = tail(log_path) or line.strip() or f"no output in {timeout:.0f} s"
        raise BenchError(f"{what} did not start: {detail}")
    return match
