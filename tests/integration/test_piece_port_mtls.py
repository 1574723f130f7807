"""The piece port with mTLS: a real UploadServer and PieceClient on 127.0.0.1 with a throw-away
cluster CA. Only seed and peer certificates of this cluster get bytes, over TLS 1.2 with the one
suite ``tls.py`` allows (ECDHE-ECDSA-AES128-GCM-SHA256)."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from damselfly.daemon.servers.upload_server import CHUNK_LENGTH, TLS_CHUNK_LENGTH, UploadServer
from damselfly.security.roles import Role
from damselfly.security.tls import PIECE_PORT_CIPHER, client_context
from damselfly.storage.store import Store
from damselfly.testing.pki import TestPki
from damselfly.testing.polling import wait_until
from damselfly.transport.piece_client import (
    ParentStatusError,
    ParentUnreachableError,
    PieceClient,
    PieceTransferError,
)

TASK_ID = "e5" * 32
PIECE = 256 * 1024
DATA = os.urandom(3 * PIECE)


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as store:
        task = store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA),
                               piece_length=PIECE)  # fmt: skip
        for number in range(3):
            task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
        task.close()
        yield store


@pytest.fixture
async def server(pki: TestPki, store: Store) -> AsyncIterator[UploadServer]:
    context = pki.node_tls("seed-a", Role.SEED).server_context()
    async with UploadServer(
        store, host="127.0.0.1", port=0, shutdown_timeout=0.2, tls=lambda: context
    ) as running:
        yield running


async def fetch(server: UploadServer, context: ssl.SSLContext | None, number: int = 0) -> bytes:
    tls = None if context is None else (lambda: context)
    async with PieceClient(tls=tls, connect_timeout=2.0) as client:
        chunks = await client.fetch_piece(server.base_url, TASK_ID, number, PIECE)
    return b"".join(chunks)


async def test_a_peer_certificate_of_the_cluster_gets_the_piece(pki, server):
    peer = pki.node_tls("peer-b", Role.PEER)
    assert server.base_url.startswith("https://")
    assert await fetch(server, peer.client_context(), 1) == DATA[PIECE : 2 * PIECE]
    # the address the scheduler hands out carries no scheme (or http): still dialled over TLS
    plain_address = server.base_url.replace("https://", "http://")
    async with PieceClient(tls=peer.client_context) as client:
        chunks = await client.fetch_piece(plain_address, TASK_ID, 2, PIECE)
    assert b"".join(chunks) == DATA[2 * PIECE :]


async def test_a_client_certificate_role_gets_403_and_is_counted(pki, server):
    tool = pki.node_tls("dfctl-1", Role.CLIENT)
    with pytest.raises(ParentStatusError) as refused:
        await fetch(server, tool.client_context())
    assert refused.value.status == 403
    assert server.statistics().guard.access_refused == 1
    assert server.statistics().pieces_served == 0


async def test_no_certificate_is_refused_at_the_handshake(pki, server):
    ca_only = client_context(None, ca_pem=pki.ca.cert_pem, check_hostname=False, piece_port=True)
    with pytest.raises(ParentUnreachableError):
        await fetch(server, ca_only)
    with pytest.raises(ParentUnreachableError):  # plain HTTP to the TLS port
        async with PieceClient(connect_timeout=2.0) as client:
            await client.fetch_piece(
                server.base_url.replace("https", "http"), TASK_ID, 0, PIECE, timeout_no_bytes=2
            )
    assert server.statistics().pieces_served == 0


async def test_a_certificate_of_another_ca_is_refused(tmp_path, pki, server):
    rogue = TestPki(tmp_path / "rogue")
    stranger = rogue.node_tls("peer-x", Role.PEER)
    with pytest.raises(ParentUnreachableError):  # it does not trust our server either
        await fetch(server, stranger.client_context())
    # one that trusts our CA but presents its own CA's certificate: the server refuses it
    rogue_files = rogue.node("peer-y", Role.PEER)
    sneaky = client_context(
        rogue_files, ca_pem=pki.ca.cert_pem, check_hostname=False, piece_port=True
    )
    with pytest.raises(PieceTransferError):
        await fetch(server, sneaky)
    await wait_until(lambda: server.statistics().guard.handshakes_failed >= 1)
    assert server.statistics().pieces_served == 0


async def test_the_piece_port_speaks_one_suite_with_forward_secrecy(pki, server):
    peer = pki.node_tls("peer-b", Role.PEER)
    host, port = server.base_url.removeprefix("https://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=peer.client_context())
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.2"
        assert ssl_object.cipher()[0] == PIECE_PORT_CIPHER == "ECDHE-ECDSA-AES128-GCM-SHA256"
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "offer",
    [
        pytest.param({"version": ssl.TLSVersion.TLSv1_3}, id="TLS 1.3 only"),
        pytest.param({"ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"}, id="another suite"),
        pytest.param({"ciphers": "ECDHE-ECDSA-AES128-SHA256"}, id="no AEAD"),
    ],
)
async def test_other_versions_and_suites_are_refused_at_the_handshake(pki, server, offer):
    files = pki.node("peer-c", Role.PEER)
    context = client_context(files, check_hostname=False, piece_port=True)
    if "version" in offer:
        context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
        context.minimum_version = offer["version"]
    else:
        context.set_ciphers(offer["ciphers"])
    with pytest.raises(ParentUnreachableError):
        await fetch(server, context)
    await wait_until(lambda: server.statistics().guard.handshakes_failed >= 1)
    assert server.statistics().pieces_served == 0


async def test_a_piece_of_many_send_chunks_arrives_exactly_over_tls(tmp_path, pki):
    """Over TLS a piece goes out in chunks: ``CHUNK_LENGTH`` the first time (re-checked while
    sent), ``TLS_CHUNK_LENGTH`` once known good. Several of each and a ragged tail, both ways,
    byte for byte."""
    length = 2 * CHUNK_LENGTH + TLS_CHUNK_LENGTH // 2 + 123
    data = os.urandom(length)
    task_id = "e6" * 32
    with Store(tmp_path / "big") as store:
        with store.open_task(task_id, url="https://x/big", content_length=length,
                             piece_length=length) as task:  # fmt: skip
            task.write_piece(0, data)
        context = pki.node_tls("seed-a", Role.SEED).server_context()
        async with UploadServer(
            store, host="127.0.0.1", port=0, shutdown_timeout=0.2, tls=lambda: context
        ) as server:
            peer = pki.node_tls("peer-b", Role.PEER)
            received = []
            async with PieceClient(tls=peer.client_context) as client:
                for _ in range(2):
                    chunks = await client.fetch_piece(server.base_url, task_id, 0, length)
                    received.append(b"".join(chunks))
                    await asyncio.sleep(0)  # the handler counts after the last byte
            rechecked = server.statistics().pieces_rechecked
    assert received == [data, data]
    assert rechecked == 1  # the first time only: the second went out in TLS chunks
