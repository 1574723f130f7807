"""The P2P mesh when things break (issue 4, "How we will know"): a peer killed mid-transfer,
the scheduler killed and restarted, a corrupted piece on a parent's disk, no scheduler at all.
Real processes on loopback (``LocalCluster``); the origin is slowed down (``Behaviour(rate=)``)
so that "mid-transfer" is a state we can observe (origin bytes), never a guess with a sleep."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from damselfly.testing.cluster import Completed, LocalCluster, Node
from damselfly.testing.origin import Behaviour
from damselfly.testing.polling import wait_until

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
PIECE = ("--piece-length", "1MiB")
SOURCE = "damselfly_daemon_source_bytes_total"
PEER = "damselfly_daemon_peer_bytes_total"
# Seeds read the origin with 8 range requests: 8 x 1 MiB/s, about 4 s for 32 MiB.
TRICKLE = Behaviour(rate=MiB)
FAST_REACTIONS = {
    "DAMSELFLY_DAEMON_ANNOUNCE_INTERVAL": "1",
    # longer than a scheduler outage in these tests (~3 s) plus the reader's report retry (2 s):
    # pieces cannot be verified while no scheduler has the reader's digests
    "DAMSELFLY_DAEMON_DOWNLOAD__STALL_TIMEOUT": "8",
}


def start_all(
    cluster: LocalCluster, url: str, outdir: Path, nodes: list[Node]
) -> list[asyncio.Task[Completed]]:
    return [
        asyncio.create_task(cluster.dfget(node, url, outdir / f"{node.name}.bin", *PIECE))
        for node in nodes
    ]


def assert_succeeded(
    cluster: LocalCluster, runs: list[Completed], outputs: list[Path], data: bytes
):
    for run, out in zip(runs, outputs, strict=True):
        assert run.code == 0, f"{out.name}: {run.stderr}\n{cluster.logs()}"
        assert out.read_bytes() == data, out.name


async def origin_served(cluster: LocalCluster, at_least: float) -> None:
    await wait_until(lambda: cluster.origin.bytes_served >= at_least, within=30, interval=0.02)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_peer_killed_mid_transfer_the_others_complete(tmp_path):
    data = os.urandom(32 * MiB)
    async with LocalCluster(tmp_path / "c", peers=3, origin_files={"/m.bin": data}) as cluster:
        cluster.origin.set_behaviour(TRICKLE)
        victim, *survivors = cluster.peers
        runs = start_all(cluster, cluster.origin.url("/m.bin"), tmp_path, cluster.peers)

        await origin_served(cluster, 0.4 * len(data))
        assert cluster.origin.bytes_served < len(data)  # mid-transfer for every peer
        await cluster.kill(victim, signal.SIGKILL)

        victim_run, *done = await asyncio.gather(*runs)
        outputs = [tmp_path / f"{node.name}.bin" for node in survivors]
        assert_succeeded(cluster, done, outputs, data)
        # its daemon died under it: dfget says so and finishes alone (issue 12), from the origin
        assert victim_run.code == 0, victim_run.stderr
        assert "dfdaemon went away mid-download" in victim_run.stderr
        assert (tmp_path / f"{victim.name}.bin").read_bytes() == data
        # the mesh read the file once; the victim's own run at most once more
        assert cluster.origin.bytes_served <= 2.02 * len(data)
        for node in survivors:
            assert await cluster.metric(node, SOURCE) == 0


async def test_scheduler_killed_mid_transfer_and_restarted(tmp_path):
    data = os.urandom(32 * MiB)
    async with LocalCluster(
        tmp_path / "c", peers=2, origin_files={"/m.bin": data}, env=FAST_REACTIONS
    ) as cluster:
        cluster.origin.set_behaviour(TRICKLE)
        url = cluster.origin.url("/m.bin")
        runs = start_all(cluster, url, tmp_path, cluster.peers)

        await origin_served(cluster, 0.3 * len(data))
        await cluster.kill(cluster.schedulers[0], signal.SIGKILL)
        killed_at = cluster.origin.bytes_served
        assert killed_at < len(data)
        await origin_served(cluster, killed_at + 2 * MiB)  # the seed reads on meanwhile
        await cluster.restart_scheduler(0)

        outputs = [tmp_path / f"{node.name}.bin" for node in cluster.peers]
        assert_succeeded(cluster, list(await asyncio.gather(*runs)), outputs, data)
        assert cluster.origin.bytes_served <= 1.02 * len(data)

        hosts = 1 + len(cluster.peers)  # rebuilt from the daemons' re-announcements
        await wait_until(lambda: scheduler_knows(cluster, hosts), within=15, interval=0.02)
        served = cluster.origin.bytes_served
        late = await cluster.add_daemon()
        run = await cluster.dfget(late, url, tmp_path / "late.bin", *PIECE)
        assert_succeeded(cluster, [run], [tmp_path / "late.bin"], data)
        assert cluster.origin.bytes_served == served  # found the seed's (and peers') data
        assert await cluster.metric(late, PEER) == len(data)


async def scheduler_knows(cluster: LocalCluster, hosts: int) -> bool:
    metrics = await cluster.metrics(cluster.schedulers[0])
    return metrics.get("damselfly_scheduler_hosts") == hosts and bool(
        metrics.get("damselfly_scheduler_tasks")
    )


def content_file(node: Node) -> Path:
    """The node's only content file: ``<storage>/content/<id[:2]>/<id>``."""
    assert node.storage_dir is not None
    (path,) = (node.storage_dir / "content").glob("*/*")
    assert path.parent.name == path.name[:2]
    return path


def corrupt_piece(node: Node, number: int) -> None:
    """Flip 4 KiB in the middle of a 1 MiB piece and move the file's mtime."""
    path = content_file(node)
    before = path.stat()
    with path.open("r+b") as content:
        content.seek(number * MiB + 1000)
        original = content.read(4096)
        content.seek(number * MiB + 1000)
        content.write(bytes(b ^ 0xFF for b in original))
    later = before.st_mtime_ns + 2_000_000_000  # a new mtime, whatever the clock's tick
    os.utime(path, ns=(later, later))


def dropped_logged(node: Node, number: int) -> bool:
    """The parent found the piece bad (when serving it, or when opening the task)."""
    pattern = rf"piece {number} does not match|were dropped: \[([0-9, ]*, )?{number}[],]"
    return re.search(pattern, node.stderr_text()) is not None


async def served_piece(node: Node, task_id: str, number: int) -> bytes | None:
    """What ``node``'s piece server hands out intact for the piece, if anything."""
    url = f"{node.upload_url}/v1/tasks/{task_id}/pieces/{number}"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return await response.read() if response.status == 200 else None
    except aiohttp.ClientError:  # cut short: what a parent does when a piece fails its check
        return None


async def test_corrupted_piece_on_a_parent_is_never_served_nor_delivered(tmp_path):
    data = os.urandom(16 * MiB)
    async with LocalCluster(
        tmp_path / "c", peers=2, origin_files={"/m.bin": data}, env=FAST_REACTIONS
    ) as cluster:
        url = cluster.origin.url("/m.bin")
        seed, peer0, peer1 = cluster.seeds[0], *cluster.peers
        first = await cluster.dfget(seed, url, tmp_path / "seed.bin", *PIECE)  # seed only
        assert_succeeded(cluster, [first], [tmp_path / "seed.bin"], data)
        assert cluster.origin.bytes_served == len(data)
        task_id = content_file(seed).name

        # the only copy of piece 9 is bad: dropped by its parent, read again from the origin
        corrupt_piece(seed, 9)
        runs = await asyncio.gather(*start_all(cluster, url, tmp_path, [peer0, peer1]))
        outputs = [tmp_path / f"{node.name}.bin" for node in (peer0, peer1)]
        assert_succeeded(cluster, list(runs), outputs, data)
        assert dropped_logged(seed, 9), seed.stderr_text()
        reread = cluster.origin.bytes_served - len(data)
        assert 0 < reread <= 2 * MiB, reread  # piece 9 again, at most once per peer

        # two of three copies of piece 3 are bad: the good one is fetched, the origin idle
        corrupt_piece(seed, 3)
        corrupt_piece(peer0, 3)
        served = cluster.origin.bytes_served
        late = await cluster.add_daemon()
        run = await cluster.dfget(late, url, tmp_path / "late.bin", *PIECE)
        assert_succeeded(cluster, [run], [tmp_path / "late.bin"], data)
        assert cluster.origin.bytes_served == served
        good = data[3 * MiB : 4 * MiB]
        assert await served_piece(peer1, task_id, 3) == good
        for parent in (seed, peer0):
            assert await served_piece(parent, task_id, 3) is None  # never the bad bytes
            assert dropped_logged(parent, 3), parent.stderr_text()


async def test_unreachable_scheduler_means_back_to_source_with_one_warning(tmp_path):
    data = os.urandom(5 * MiB + 17)
    async with LocalCluster(
        tmp_path / "c", schedulers=0, seeds=0, peers=0, origin_files={"/m.bin": data}
    ) as cluster:
        lonely = await cluster.add_daemon(schedulers=[f"127.0.0.1:{closed_port()}"])
        url = cluster.origin.url("/m.bin")
        started = time.monotonic()
        run = await cluster.dfget(lonely, url, tmp_path / "m.bin")
        assert_succeeded(cluster, [run], [tmp_path / "m.bin"], data)
        assert time.monotonic() - started < 15  # no long retries before going to the origin
        assert cluster.origin.bytes_served == len(data)
        assert await cluster.metric(lonely, SOURCE) == len(data)

        warnings = [
            line for line in lonely.stderr_text().splitlines() if "WARNING" in line and url in line
        ]
        assert len(warnings) == 1, lonely.stderr_text()
        assert "scheduler unavailable" in warnings[0]
        assert "warning" not in run.stderr.lower()  # the user's terminal stays clean
