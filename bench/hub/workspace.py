"""The hub benchmark's world: the repo on /dev/shm, the test hub serving it, per-run dirs.

The hub is the project's own test Hugging Face hub (``python -m damselfly.testing.hf_hub``)
in a separate process on loopback: API and small files on one port, LFS files answered with a
302 to its CDN on another port (``sendfile``), as huggingface.co does. Both halves run in that
one process, so its CPU is "what serving the run cost the origin". Ports are chosen by the
kernel (port 0) and read back from the hub's banner, so no other process can take them first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common.workspace import BenchError, process_cpu_seconds, server_process
from bench.hub.repo import ModelRepo
from damselfly.demo.hub_repos import DEFAULT_LFS_THRESHOLD

HUB_START_TIMEOUT = 120.0  # it hashes every LFS file (sha256) before it answers
_BANNER = re.compile(
    r"^hub (?P<hub>http://127\.0\.0\.1:\d+) cdn (?P<cdn>http://127\.0\.0\.1:\d+)"
    r" repo (?P<repo>\S+) commit (?P<commit>[0-9a-f]{40})\s*$"
)
# Variables that would change what a client does: tokens, endpoints, caches, transfer backends.
_CLIENT_ENV_PREFIXES = ("DFGET_", "HF_", "HUGGING_FACE_", "HUGGINGFACE_")


@dataclass(frozen=True)
class Hub:
    endpoint: str  # HF_ENDPOINT
    cdn: str
    commit: str  # what ``main`` resolves to
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the hub process (hub and CDN) has used so far."""
        return process_cpu_seconds(self.pid)


@dataclass(frozen=True)
class Workspace:
    root: Path  # the /dev/shm directory holding everything
    repo: ModelRepo
    hub: Hub

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def snapshot(self, hf_home: Path) -> Path:
        """Where the HF cache under ``hf_home`` holds the repo at the hub's commit."""
        folder = "models--" + self.repo.repo_id.replace("/", "--")
        return hf_home / "hub" / folder / "snapshots" / self.hub.commit

    def client_env(self, hf_home: Path) -> dict[str, str]:
        """Our environment with no client settings of the user's, pointed at the test hub.

        ``HF_HOME`` is a fresh directory per run: no token file, no cache, no config. Xet is
        off (the test hub serves plain LFS, like a mirror); ``HF_HUB_ENABLE_HF_TRANSFER`` is
        unset with every other ``HF_*`` variable."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_PREFIXES)}
        return env | {
            "HF_ENDPOINT": self.hub.endpoint,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }


def lfs_threshold(shard_size: int) -> int:
    """The hub's LFS threshold, lowered for small shards so they stay LFS (CDN-served)."""
    return min(DEFAULT_LFS_THRESHOLD, shard_size)


@contextlib.contextmanager
def hub_process(repo: ModelRepo, log_path: Path, *, shard_size: int) -> Iterator[Hub]:
    """Serve ``repo`` from a separate test-hub process; always stops it."""
    argv = [sys.executable, "-m", "damselfly.testing.hf_hub", "--repo-dir", str(repo.directory)]
    argv += ["--repo-id", repo.repo_id, "--host", "127.0.0.1", "--port", "0", "--cdn-port", "0"]
    argv += ["--lfs-threshold", str(lfs_threshold(shard_size))]
    with server_process(
        argv, log_path=log_path, banner=_BANNER, start_timeout=HUB_START_TIMEOUT
    ) as server:
        found = server.banner
        if found.group("repo") != repo.repo_id:
            raise BenchError(f"the hub serves {found.group('repo')}, not {repo.repo_id}")
        yield Hub(found.group("hub"), found.group("cdn"), found.group("commit"), server.pid)
