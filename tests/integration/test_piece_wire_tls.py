"""Piece bodies over TLS, read by worker threads (``piece_wire_threads.py``), against a raw
TLS parent that stalls, cuts off or is left by a cancelled download: the same typed errors as
in plain text, and no socket or thread left behind."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from damselfly.security.roles import Role
from damselfly.testing.pki import TestPki
from damselfly.testing.polling import wait_until
from damselfly.transport.piece_client import (
    ParentStalledError,
    PieceClient,
    PieceLengthError,
)

TASK_ID = "d4" * 32
BODY = os.urandom(256 * 1024)
HEAD = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()


class TlsParent:
    """Sends the head and ``sent`` body bytes, then does what ``then`` says."""

    def __init__(self) -> None:
        self.sent = len(BODY)
        self.then = "close"  # or "stall"
        self.surplus = b""  # sent after each body
        self.connections = 0
        self.base_url = ""
        self.open_connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(HEAD + BODY[: self.sent] + self.surplus)
                await writer.drain()
                if self.sent < len(BODY):
                    if self.then == "stall":
                        await reader.read()  # until the client goes
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture
async def parent(pki: TestPki) -> AsyncIterator[TlsParent]:
    raw = TlsParent()
    context = pki.node_tls("seed-a", Role.SEED).server_context()
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=context)
    raw.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield raw


@pytest.fixture
def tls(pki: TestPki) -> Callable[[], object]:
    return pki.node_tls("peer-b", Role.PEER).client_context


async def test_pieces_arrive_and_the_connection_is_kept(parent: TlsParent, tls) -> None:
    async with PieceClient(tls=tls, connect_timeout=2.0) as pieces:
        for number in range(3):
            got = await pieces.fetch_piece(parent.base_url, TASK_ID, number, len(BODY))
            assert b"".join(got) == BODY
        assert parent.open_connections == 1
    await wait_until(lambda: parent.open_connections == 0)  # closed with the client


async def test_a_cut_off_body_is_a_length_error(parent: TlsParent, tls) -> None:
    parent.sent = 100_000
    async with PieceClient(tls=tls, connect_timeout=2.0) as pieces:
        with pytest.raises(PieceLengthError, match=f"closed after 100000 of {len(BODY)}"):
            await pieces.fetch_piece(parent.base_url, TASK_ID, 0, len(BODY))


async def test_a_stall_is_a_stalled_error(parent: TlsParent, tls) -> None:
    parent.sent, parent.then = 100_000, "stall"
    async with PieceClient(tls=tls, connect_timeout=2.0) as pieces:
        with pytest.raises(ParentStalledError, match=r"no byte for 0\.3s after 100000 of"):
            await pieces.fetch_piece(parent.base_url, TASK_ID, 0, len(BODY), timeout_no_bytes=0.3)
    await wait_until(lambda: parent.open_connections == 0)


async def test_a_cancelled_read_ends_its_thread_and_closes_the_socket(
    parent: TlsParent, tls
) -> None:
    parent.sent, parent.then = 100_000, "stall"
    async with PieceClient(tls=tls, connect_timeout=2.0) as pieces:
        fetch = asyncio.create_task(
            pieces.fetch_piece(parent.base_url, TASK_ID, 0, len(BODY), timeout_no_bytes=30)
        )
        await wait_until(lambda: parent.open_connections == 1)
        await asyncio.sleep(0.1)  # the worker thread is now waiting in recv_into
        busy = [t for t in threading.enumerate() if t.name.startswith("piece-tls")]
        fetch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetch
        # the parent sees the connection go at once, not after the 30 s patience
        await wait_until(lambda: parent.open_connections == 0, within=2.0)
    assert busy  # the read did run in a worker thread


async def test_a_byte_past_the_body_retires_the_connection(parent: TlsParent, tls) -> None:
    parent.surplus = b"HTTP/1.1 200 OK\r\n"  # would read as the head of the next answer
    async with PieceClient(tls=tls, connect_timeout=2.0) as pieces:
        for number in range(2):
            await asyncio.sleep(0.05)  # the surplus has arrived
            got = await pieces.fetch_piece(parent.base_url, TASK_ID, number, len(BODY))
            assert b"".join(got) == BODY
    assert parent.connections == 2
