"""``damselfly demo``: the README's main job, on one machine, offline, in well under a minute.

Until the P2P mesh lands (issue 4) the demo shows the standalone path end to end with real
processes: a local HTTP origin that counts the bytes it serves, then the real ``dfget``
command downloading a synthetic model file cold (from the origin), warm (from the local piece
store, zero origin bytes) and with ``--digest`` checked while downloading.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from damselfly.core.errors import DamselflyError
from damselfly.core.units import format_size
from damselfly.testing.origin import OriginServer

CHUNK = 16 << 20


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    origin_bytes: int
    matches: bool


def demo_root() -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private 0700 directory
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="damselfly-demo-", dir=base))


def write_model(path: Path, length: int) -> str:
    """A synthetic weights file of ``length`` random bytes; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as sink:
        remaining = length
        while remaining:
            block = os.urandom(min(CHUNK, remaining))
            digest.update(block)
            sink.write(block)
            remaining -= len(block)
    return digest.hexdigest()


async def run_demo(length: int, workdir: Path) -> list[Run]:
    expected = write_model(workdir / "origin" / "model.safetensors", length)
    digest_flag = ["--digest", f"sha256:{expected}"]
    steps = [  # (label, store directory, extra flags)
        ("cold: from the origin", "store", []),
        ("warm: from the local store", "store", []),
        ("fresh store, --digest checked while downloading", "store-2", digest_flag),
    ]
    runs: list[Run] = []
    async with OriginServer(root=workdir / "origin") as origin:
        url = origin.url("/model.safetensors")
        for number, (label, store, extra) in enumerate(steps, start=1):
            print(f"\n== run {number}: {label}", file=sys.stderr)
            before = origin.bytes_served
            output = workdir / f"out{number}" / "model.safetensors"
            seconds = await _dfget(url, output, workdir / store, extra)
            served = origin.bytes_served - before
            runs.append(Run(label, seconds, served, _sha256(output) == expected))
    return runs


async def _dfget(url: str, output: Path, store: Path, extra: list[str]) -> float:
    argv = [
        sys.executable,
        "-m",
        "damselfly.cli.dfget",
        url,
        "-O",
        str(output),
        "--storage-dir",
        str(store),
        *extra,
    ]
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(*argv)
    if await process.wait() != 0:
        raise DamselflyError(f"dfget exited with {process.returncode}")
    return time.monotonic() - started


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def print_report(runs: list[Run], length: int) -> bool:
    print(f"\nfile: {format_size(length)}", file=sys.stderr)
    print(f"{'run':<52} {'time':>8} {'origin bytes':>14}  sha256", file=sys.stderr)
    for run in runs:
        verdict = "matches" if run.matches else "MISMATCH"
        print(
            f"{run.label:<52} {run.seconds:>7.2f}s {format_size(run.origin_bytes):>14}  {verdict}",
            file=sys.stderr,
        )
    return all(run.matches for run in runs)
