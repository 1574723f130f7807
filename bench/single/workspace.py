"""The single-node benchmark's world: one random file on /dev/shm and the servers around it.

The origin is the project's own test server, run as a separate process
(``python -m damselfly.testing.origin``) on a free loopback port. Only when a chosen system
needs them: the same file on a test Hugging Face hub (``bench.single.hub``), and a scheduler
with one dfdaemon (``bench.single.daemon``). The /dev/shm directory, hashing and process
plumbing are ``bench.common.workspace``'s.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common.workspace import (
    BenchError,
    free_port,
    process_cpu_seconds,
    server_process,
    write_random,
)
from bench.single.daemon import DaemonNode
from bench.single.hub import SingleFileHub

ORIGIN_START_TIMEOUT = 20.0
SOURCE_NAME = "blob.bin"
OUTPUT_NAME = "out.bin"
PRIMER_NAME = "primer.bin"  # what a restarted dfdaemon downloads before a timed run
PRIMER_LENGTH = 1024 * 1024
_BANNER = re.compile(r" at (http://127\.0\.0\.1:(\d+))\s*$")


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
        """User + system CPU the origin process has used so far."""
        return process_cpu_seconds(self.pid)


@dataclass(frozen=True)
class Workspace:
    root: Path  # the /dev/shm directory holding everything
    source: Source
    origin: Origin
    hub: SingleFileHub | None = None
    node: DaemonNode | None = None

    @property
    def url(self) -> str:
        """Where the origin serves the source."""
        return f"{self.origin.base_url}/{self.source.path.name}"

    def serving_cpu_seconds(self) -> float:
        """CPU used so far by every process serving the file: the origin and the hub."""
        hub = self.hub.cpu_seconds() if self.hub is not None else 0.0
        return self.origin.cpu_seconds() + hub

    def require_hub(self) -> SingleFileHub:
        if self.hub is None:
            raise BenchError("no test hub was started for this run")
        return self.hub

    def require_node(self) -> DaemonNode:
        if self.node is None:
            raise BenchError("no scheduler and dfdaemon were started for this run")
        return self.node

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


def make_source(directory: Path, size: int) -> Source:
    """``size`` random bytes in ``directory/blob.bin``, hashed while written."""
    path = directory / SOURCE_NAME
    return Source(path, size, write_random(path, size))


def make_primer(directory: Path) -> Path:
    """A small random file next to the source, for priming a restarted daemon."""
    path = directory / PRIMER_NAME
    write_random(path, PRIMER_LENGTH)
    return path


@contextlib.contextmanager
def origin_process(root: Path, log_path: Path) -> Iterator[Origin]:
    """Serve ``root`` from a separate origin process; always stops it."""
    port = free_port()
    argv = [sys.executable, "-m", "damselfly.testing.origin", "--root", str(root)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with server_process(
        argv, log_path=log_path, banner=_BANNER, start_timeout=ORIGIN_START_TIMEOUT
    ) as server:
        if int(server.banner.group(2)) != port:
            raise BenchError(f"origin did not start on port {port}: {server.banner.string!r}")
        yield Origin(server.banner.group(1), server.pid)
