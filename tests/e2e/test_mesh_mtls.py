"""The mesh with mTLS on (issue 11): scheduler, seed and peers as processes, each with its own
certificate of a throw-away cluster CA (``LocalCluster(tls=True)``). Pieces still flow between
peers; a rogue without a certificate of the cluster can neither register nor fetch a piece."""

from __future__ import annotations

import asyncio
import os
import ssl

import aiohttp
import grpc
import pytest

from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub
from damselfly.security.files import NodeFiles, NodeMaterial
from damselfly.security.roles import Role
from damselfly.security.tls import client_context, secure_channel
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.pki import TestPki

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
SOURCE = "damselfly_daemon_source_bytes_total"
PEER = "damselfly_daemon_peer_bytes_total"
UPLOAD = "damselfly_daemon_upload_bytes_total"
SPOT_CHECK = "damselfly_daemon_spot_check_bytes_total"


async def test_mesh_over_mtls_trades_pieces_and_keeps_outsiders_out(tmp_path):
    data = os.urandom(24 * MiB + 5)
    async with LocalCluster(
        tmp_path / "c", peers=2, origin_files={"/m.bin": data}, tls=True
    ) as cluster:
        url = cluster.origin.url("/m.bin")
        first = await cluster.dfget(0, url, tmp_path / "a.bin")
        assert first.code == 0, cluster.logs()
        second = await cluster.dfget(1, url, tmp_path / "b.bin")
        assert second.code == 0, cluster.logs()

        assert (tmp_path / "a.bin").read_bytes() == data
        assert (tmp_path / "b.bin").read_bytes() == data
        await _spot_checks_are_counted_apart(cluster, len(data))
        assert await cluster.metric(1, PEER) == len(data)
        assert await cluster.metric(1, SOURCE) == 0
        assert [node.host_id for node in cluster.peers] == ["peer-0", "peer-1"]  # the CNs

        await _rogue_cannot_register(cluster, tmp_path)
        await _rogue_cannot_fetch(cluster, tmp_path)
        logs = "\n".join(node.stderr_text() for node in cluster.all_nodes())
        assert "running without TLS" not in logs


async def _spot_checks_are_counted_apart(cluster: LocalCluster, size: int) -> None:
    """Every node that got the file from peers read 2 x 64 KiB from the origin to check it
    (docs/security.md); those bytes are ``spot_check_bytes``, never ``source_bytes`` (what
    benchmarks read as the download's origin bytes), and the two add up to what the origin
    served."""
    nodes = [*cluster.seeds, *cluster.peers]
    figures = [await cluster.metrics(node) for node in nodes]
    for node, got in zip(nodes, figures, strict=True):
        expected = 2 * 64 * 1024 if got.get(PEER, 0.0) > 0 else 0
        assert got.get(SPOT_CHECK, 0.0) == expected, node.name
    source = sum(got.get(SOURCE, 0.0) for got in figures)
    spot = sum(got.get(SPOT_CHECK, 0.0) for got in figures)
    assert spot == 2 * 64 * 1024 * sum(got.get(PEER, 0.0) > 0 for got in figures) > 0
    assert source <= 1.02 * size
    assert cluster.origin.bytes_served == source + spot


async def _rogue_cannot_register(cluster: LocalCluster, tmp_path) -> None:
    address = cluster.scheduler_addresses[0]
    async with grpc.aio.insecure_channel(address) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await SchedulerStub(plain).LeaveHost(pb.LeaveHostRequest(host_id="x"), timeout=3)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    other = TestPki(tmp_path / "rogue-pki")
    files = other.node("seed-9", Role.SEED)
    material = _material(files, ca_pem=(cluster.workdir / "pki" / "ca" / "ca.crt").read_bytes())
    channel = secure_channel(address, material, server_name="scheduler.role.damselfly.internal")
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await SchedulerStub(channel).LeaveHost(pb.LeaveHostRequest(host_id="x"), timeout=3)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def _material(files: NodeFiles, *, ca_pem: bytes) -> NodeMaterial:
    return NodeMaterial(ca_pem, files.cert_file.read_bytes(), files.key_file.read_bytes())


async def _rogue_cannot_fetch(cluster: LocalCluster, tmp_path) -> None:
    upload = cluster.peers[0].upload_url.replace("https://", "")
    ca_pem = (cluster.workdir / "pki" / "ca" / "ca.crt").read_bytes()
    no_cert = client_context(None, ca_pem=ca_pem, check_hostname=False, piece_port=True)
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    url = f"https://{upload}/v1/tasks/{'ab' * 32}/pieces/0"
    for context in (no_cert, insecure):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, asyncio.TimeoutError)):
            await _get(url, context)


async def _get(url: str, context: ssl.SSLContext) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context, timeout=aiohttp.ClientTimeout(5)) as response,
    ):
        return await response.read()
