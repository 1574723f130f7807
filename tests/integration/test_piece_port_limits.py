"""The piece port under abuse (issue 11, item 4): thousands of idle connections, silent
connections, too many connections or requests from one peer. A real UploadServer on
127.0.0.1; the flood comes from 127.0.0.2 so that real peers (127.0.0.1) are another IP."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from damselfly.daemon.servers.upload_guard import UploadLimits
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.storage.store import Store
from damselfly.testing.flood import close_all, open_idle_connections
from damselfly.testing.polling import wait_until
from damselfly.transport.piece_client import PieceClient

TASK_ID = "f6" * 32
PIECE = 64 * 1024
DATA = os.urandom(2 * PIECE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as store:
        task = store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA),
                               piece_length=PIECE)  # fmt: skip
        task.write_piece(0, DATA[:PIECE])
        task.write_piece(1, DATA[PIECE:])
        task.close()
        yield store


def serve(store: Store, limits: UploadLimits) -> UploadServer:
    return UploadServer(store, host="127.0.0.1", port=0, shutdown_timeout=0.2, limits=limits)


async def fetch(server: UploadServer, number: int = 0) -> bytes:
    async with PieceClient(connect_timeout=1.0) as client:
        return b"".join(await client.fetch_piece(server.base_url, TASK_ID, number, PIECE))


async def test_2000_idle_connections_do_not_stop_a_real_peer(store, caplog):
    caplog.set_level(logging.DEBUG)
    limits = UploadLimits(header_timeout=5.0, max_connections_per_peer=64)
    async with serve(store, limits) as server:
        flood = open_idle_connections(("127.0.0.1", server.port), 2000)
        try:
            guard = server.statistics
            await wait_until(
                lambda: guard().guard.connections_refused + guard().guard.connections_open >= 1500,
                within=20,
            )
            started = time.monotonic()
            assert await fetch(server, 1) == DATA[PIECE:]
            assert time.monotonic() - started < 1.0
            assert guard().guard.connections_open <= 64 + 1
        finally:
            close_all(flood)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) < 100, [r.getMessage() for r in warnings[:5]]
    assert len(caplog.records) < 100


async def test_a_silent_connection_is_closed_after_the_header_timeout(store):
    async with serve(store, UploadLimits(header_timeout=0.2)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed by the server, nothing sent
        finally:
            writer.close()
        assert server.statistics().guard.header_timeouts == 1
        assert await fetch(server) == DATA[:PIECE]  # a real request is not affected


async def test_connections_over_the_per_peer_cap_are_aborted(store):
    async with serve(store, UploadLimits(max_connections_per_peer=3)) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        try:
            await wait_until(lambda: server.statistics().guard.connections_open == 3)
            extra = socket.create_connection(("127.0.0.1", server.port))
            await wait_until(lambda: server.statistics().guard.connections_refused == 1)
            assert answer_of(extra) == b""  # reset: not one byte of an answer
            extra.close()
        finally:
            close_all(held)
        await wait_until(lambda: server.statistics().guard.connections_open == 0)
        assert await fetch(server) == DATA[:PIECE]


def answer_of(sock: socket.socket) -> bytes:
    sock.settimeout(2)
    try:
        sock.sendall(b"GET /v1/tasks/x/bitmap HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(1)
    except ConnectionResetError:
        return b""


async def test_requests_over_the_per_peer_rate_get_429(store):
    async with serve(store, UploadLimits(requests_per_second_per_peer=5)) as server:
        url = f"{server.base_url}/v1/tasks/{TASK_ID}/bitmap"
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(20):
                async with session.get(url) as response:
                    statuses.append(response.status)
    assert statuses.count(200) <= 7
    assert statuses.count(429) >= 13
    assert server.statistics().guard.requests_refused_rate == statuses.count(429)
