"""The P2P mesh with real processes on loopback (issue 4, "How we will know"): a scheduler, a
seed and peer daemons started by ``LocalCluster``, the real ``dfget`` through each peer."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from damselfly.testing.cluster import LocalCluster, Node

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
SOURCE = "damselfly_daemon_source_bytes_total"
PEER = "damselfly_daemon_peer_bytes_total"
UPLOAD = "damselfly_daemon_upload_bytes_total"
CACHE_HITS = "damselfly_daemon_cache_hits_total"
# A seed whose uplink cannot carry every copy alone: how seeds are deployed, and what makes
# peers trade pieces deterministically (an unlimited seed on loopback feeds everyone at once).
SLOW_SEED = {"DAMSELFLY_DAEMON_UPLOAD__RATE_LIMIT": "32MiB"}
# Peers that started together used to take equally rare pieces in one shared order from a
# random first piece: with 16 pieces of 4 MiB they often fetched the same pieces in lockstep
# and traded almost nothing (0 bytes once in CI). Each peer now shuffles its order inside
# windows of 16 pieces (docs/p2p.md); 64 pieces spread the starts besides.
TRADE_PIECES = ("--piece-length", "1MiB")


async def counter(cluster: LocalCluster, node: Node, name: str) -> float:
    return await cluster.metric(node, name)


async def fetch_all(cluster: LocalCluster, url: str, outdir: Path, *extra: str) -> list[Path]:
    """dfget ``url`` on every peer at once; returns the outputs (each run must succeed)."""
    outputs = [outdir / f"peer-{i}" / "out.bin" for i in range(len(cluster.peers))]
    runs = await asyncio.gather(
        *(cluster.dfget(i, url, out, *extra) for i, out in enumerate(outputs))
    )
    for i, run in enumerate(runs):
        assert run.code == 0, f"peer-{i}: {run.stderr}\n{cluster.logs()}"
    return outputs


async def test_three_peers_at_once_read_the_origin_once_and_trade_pieces(tmp_path):
    data = os.urandom(64 * MiB)
    async with LocalCluster(
        tmp_path / "c", peers=3, origin_files={"/model.bin": data}, seed_env=SLOW_SEED
    ) as cluster:
        url = cluster.origin.url("/model.bin")
        outputs = await fetch_all(cluster, url, tmp_path, *TRADE_PIECES)

        assert all(out.read_bytes() == data for out in outputs)
        assert cluster.origin.bytes_served <= 1.02 * len(data)
        peers = [await cluster.metrics(node) for node in cluster.peers]
        assert [m[PEER] for m in peers] == [len(data)] * 3  # no duplicate counted
        assert [m[SOURCE] for m in peers] == [0, 0, 0]
        uploads = [m[UPLOAD] for m in peers]
        assert sum(uploads) > 0, f"peers uploaded {uploads}\n{cluster.logs()}"  # they traded
        assert await counter(cluster, cluster.seeds[0], SOURCE) == len(data)


async def test_second_download_is_a_cache_hit_and_a_late_peer_reads_only_peers(tmp_path):
    data = os.urandom(16 * MiB + 123)
    piece = ("--piece-length", "1MiB")
    async with LocalCluster(tmp_path / "c", peers=3, origin_files={"/w.bin": data}) as cluster:
        url = cluster.origin.url("/w.bin")
        await fetch_all(cluster, url, tmp_path / "first", *piece)
        served = cluster.origin.bytes_served
        assert served == len(data)

        again = await cluster.dfget(0, url, tmp_path / "again.bin", *piece)
        assert again.code == 0, again.stderr
        assert (tmp_path / "again.bin").read_bytes() == data
        assert cluster.origin.bytes_served == served  # a HEAD at most
        assert await counter(cluster, cluster.peers[0], CACHE_HITS) == 1

        uploads_before = [await counter(cluster, n, UPLOAD) for n in cluster.peers]
        late = await cluster.add_daemon()
        done = await cluster.dfget(late, url, tmp_path / "late.bin", *piece)
        assert done.code == 0, done.stderr
        assert (tmp_path / "late.bin").read_bytes() == data
        assert cluster.origin.bytes_served == served
        assert await counter(cluster, late, PEER) == len(data)
        assert await counter(cluster, late, SOURCE) == 0
        uploads_after = [await counter(cluster, n, UPLOAD) for n in cluster.peers[:3]]
        assert sum(uploads_after) > sum(uploads_before), cluster.logs()  # not the seed alone


async def test_small_files_go_through_the_mesh_and_the_origin_once(tmp_path):
    files = {"/config.json": os.urandom(3 * 1024 + 7), "/vocab.txt": os.urandom(700)}
    async with LocalCluster(tmp_path / "c", peers=3, origin_files=files) as cluster:
        for path, data in files.items():
            outputs = await fetch_all(cluster, cluster.origin.url(path), tmp_path / path[1:])
            assert all(out.read_bytes() == data for out in outputs)
            assert cluster.origin.bytes_served_for(path) == len(data)
            assert cluster.origin.request_count(path, "GET") == 1
        peers = [await cluster.metrics(node) for node in cluster.peers]
        assert [m[SOURCE] for m in peers] == [0, 0, 0]
        assert [m[PEER] for m in peers] == [sum(len(d) for d in files.values())] * 3, [
            {k[17:]: v for k, v in m.items() if "total" in k} for m in peers
        ]
