"""The benchmark's world: a fresh directory on /dev/shm, the test file, the origin process.

Everything the benchmark writes (source file, outputs, piece stores, logs) lives under one
``/dev/shm/damselfly-bench-*`` directory, so no run touches the root disk and one
``rmtree`` cleans up. The origin is the project's own test server, run as a separate process
(``python -m damselfly.testing.origin``) on a free loopback port.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.single.measure import stop_process, tail

SHM = Path("/dev/shm")
WRITE_CHUNK_LENGTH = 16 * 1024 * 1024
HASH_CHUNK_LENGTH = 8 * 1024 * 1024
ORIGIN_START_TIMEOUT = 20.0
SOURCE_NAME = "blob.bin"


class BenchError(Exception):
    """A benchmark that cannot give a true figure: a failed run, a corrupt output."""


@dataclass(frozen=True)
class Source:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Origin:
    base_url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the origin process has used so far (from ``/proc/<pid>/stat``)."""
        try:
            text = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = text.rpartition(")")[2].split()  # after "pid (comm)"; utime is field 14
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workspace:
    root: Path  # the /dev/shm directory holding everything
    source: Source
    origin: Origin

    @property
    def url(self) -> str:
        """Where the origin serves the source."""
        return f"{self.origin.base_url}/{self.source.path.name}"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


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


def make_source(directory: Path, size: int) -> Source:
    """``size`` random bytes in ``directory/blob.bin``, hashed while written."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SOURCE_NAME
    hasher = hashlib.sha256()
    with path.open("wb") as sink:
        for offset in range(0, size, WRITE_CHUNK_LENGTH):
            chunk = os.urandom(min(WRITE_CHUNK_LENGTH, size - offset))
            hasher.update(chunk)
            sink.write(chunk)
    return Source(path, size, hasher.hexdigest())


def sha256_of(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def free_port() -> int:
    """A loopback port free right now (the origin binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def origin_process(root: Path, log_path: Path) -> Iterator[Origin]:
    """Serve ``root`` from a separate origin process; always stops it."""
    port = free_port()
    argv = [sys.executable, "-m", "damselfly.testing.origin", "--root", str(root)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        yield Origin(_wait_for_banner(process, port, log_path), process.pid)
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def _wait_for_banner(process: subprocess.Popen[str], port: int, log_path: Path) -> str:
    """Read ``serving DIR at URL`` from the origin; the URL it names is the one we use."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=ORIGIN_START_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    match = re.search(r" at (http://127\.0\.0\.1:(\d+))\s*$", line)
    if match is None or int(match.group(2)) != port:
        detail = tail(log_path) or line.strip() or "no output"
        raise BenchError(f"origin did not start on port {port}: {detail}")
    return match.group(1)


def remove(*paths: Path) -> None:
    """Delete files and directories if present (a run's cold state)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
