"""The same random file as a one-file model repo on the project's test Hugging Face hub.

The repo directory holds one hard link to the benchmark's source file (no second copy in
/dev/shm; the test hub skips symlinks), named ``model.safetensors``. The hub is the one the
hub benchmark uses (``python -m damselfly.testing.hf_hub``, started by
``bench.hub.workspace.hub_process``): API on one port, and the file, which is always an LFS
file here (the LFS threshold is lowered for small sizes), answered with a 302 to its CDN on
another port, which sends it with ``sendfile``. It hashes the file once before it answers,
outside every timed region. Clients get the hub benchmark's environment: a fresh ``HF_HOME``,
``HF_ENDPOINT`` set, Xet and telemetry off, no other ``HF_*`` or ``DFGET_*`` variable.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.hub.repo import ModelRepo, RepoFile
from bench.hub.workspace import Hub, hub_process
from bench.hub.workspace import Workspace as HubSite

REPO_ID = "bench/single"
FILE_NAME = "model.safetensors"


@dataclass(frozen=True)
class SingleFileHub:
    site: HubSite  # the repo, the running hub, and the client environment

    @property
    def hub(self) -> Hub:
        return self.site.hub

    @property
    def repo_id(self) -> str:
        return self.site.repo.repo_id

    @property
    def dfget_url(self) -> str:
        return f"hf://{self.repo_id}/{FILE_NAME}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the hub process (API and CDN) so far."""
        return self.hub.cpu_seconds()

    def client_env(self, hf_home: Path) -> dict[str, str]:
        return self.site.client_env(hf_home)


@contextlib.contextmanager
def single_file_hub(
    source: Path, size: int, sha256: str, root: Path, log_path: Path
) -> Iterator[SingleFileHub]:
    """Serve ``source`` as ``REPO_ID``'s only file from a test-hub process; always stops it."""
    directory = root / "hf-repo"
    directory.mkdir(parents=True)
    os.link(source, directory / FILE_NAME)
    repo = ModelRepo(REPO_ID, directory, (RepoFile(FILE_NAME, size, sha256),))
    with hub_process(repo, log_path, shard_size=size) as hub:
        yield SingleFileHub(HubSite(root, repo, hub))
