"""Bodies read with ``SO_RCVLOWAT`` (``low_water.py``): the socket wakes the reader
only once many bytes wait, yet the last bytes of a body never wait for bytes that will not
come, in plain text (the event loop's ``BufferedProtocol``) and over TLS (worker threads)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from damselfly.security.roles import Role
from damselfly.testing.pki import TestPki
from damselfly.transport.low_water import LOW_WATER, low_water, receive_buffer, set_low_water
from damselfly.transport.piece_client import PieceClient

TASK_ID = "e5" * 32
PART = 1024 * 1024
# two full parts, then a last part longer than LOW_WATER that arrives in two bursts: first
# LOW_WATER + 4 KiB (wakes the reader), then the rest (fewer bytes than LOW_WATER)
FIRST_BURST = 2 * PART + LOW_WATER + 4096
BODY = os.urandom(2 * PART + LOW_WATER + 44 * 1024 + 7)
HEAD = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()


def test_low_water_is_bounded_by_the_rest_the_cap_and_the_rate() -> None:
    assert low_water(10 * PART, None, 10.0) == 1  # no rate yet: wake for every byte
    assert low_water(10 * PART, 1e9, 10.0) == LOW_WATER
    assert low_water(1000, 1e9, 10.0) == 1000  # never more than is still to come
    assert low_water(10 * PART, 64_000, 10.0) == 10_000  # a 64th of the patience's bytes
    assert low_water(0, 1e9, 10.0) == low_water(-5, 1e9, 10.0) == 1


async def serve_in_two_bursts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(HEAD + BODY[:FIRST_BURST])
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(BODY[FIRST_BURST:])
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture(params=["plain", "tls"])
async def parent(
    request: pytest.FixtureRequest, pki: TestPki
) -> AsyncIterator[tuple[str, Callable[[], ssl.SSLContext] | None]]:
    tls = request.param == "tls"
    context = pki.node_tls("seed-a", Role.SEED).server_context() if tls else None
    server = await asyncio.start_server(serve_in_two_bursts, "127.0.0.1", 0, ssl=context)
    client_tls = pki.node_tls("peer-b", Role.PEER).client_context if tls else None
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", client_tls


async def test_the_last_bytes_of_a_body_do_not_wait_for_the_low_water_mark(
    parent: tuple[str, Callable[[], ssl.SSLContext] | None],
) -> None:
    """Once the first part measured the rate, the last part waits for LOW_WATER bytes; after
    the first burst fewer than that are still to come, so the mark must come down to them
    (else no byte would wake the reader before the 1 s no-bytes timeout)."""
    base_url, tls = parent
    async with PieceClient(tls=tls, connect_timeout=2.0) as pieces:
        for number in range(2):  # the second on the kept connection, its rate known
            got: list[bytes] = []

            async def keep(part: list[memoryview], into: list[bytes] = got) -> None:
                into.extend(bytes(view) for view in part)

            await pieces.receive_piece(
                base_url, TASK_ID, number, len(BODY), keep, part_length=PART, timeout_no_bytes=1.0
            )
            assert b"".join(got) == BODY


def test_the_mark_is_at_most_a_quarter_of_the_receive_buffer() -> None:
    assert low_water(10 * PART, 1e9, 10.0, buffer=4 * PART) == LOW_WATER
    assert low_water(10 * PART, 1e9, 10.0, buffer=131_072) == 32_768
    assert low_water(10 * PART, 1e9, 10.0, buffer=0) == LOW_WATER  # unknown: no cap
    assert low_water(10 * PART, 1e9, 10.0, buffer=3) == 1


def connected_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return listener, client, server


def test_a_mark_never_makes_the_kernel_grow_the_buffer() -> None:
    """Linux grows ``SO_RCVBUF`` (and clamps the TCP window to the mark) when a mark does not
    fit the window; the capped mark leaves a fresh connection's buffer alone, the uncapped
    one does not (so this test can tell the two apart)."""
    sockets = connected_pair()
    try:
        sock = sockets[1]
        before = receive_buffer(sock)
        assert before > 0
        if before >= 4 * LOW_WATER:  # tcp_rmem's default already fits any mark: nothing to show
            pytest.skip(f"a fresh socket's receive buffer is already {before} bytes")
        set_low_water(sock, low_water(10 * PART, 1e9, 10.0, receive_buffer(sock)))
        assert receive_buffer(sock) == before
        set_low_water(sock, low_water(10 * PART, 1e9, 10.0))  # no cap: LOW_WATER
        assert receive_buffer(sock) > before
    finally:
        for each in sockets:
            each.close()
