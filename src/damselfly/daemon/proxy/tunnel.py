"""Blind ``CONNECT`` tunnels: bytes both ways, nothing read, nothing kept.

Each direction is one pump; when one side finishes sending, the other side's write half is
closed (TCP half-close), and the tunnel ends when both pumps have. An error on either side
ends both.
"""

from __future__ import annotations

import asyncio

PUMP_LENGTH = 256 * 1024


async def open_tunnel(
    host: str, port: int, connect_timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the origin; ``OSError`` (``TimeoutError`` included) when it cannot be."""
    async with asyncio.timeout(connect_timeout):
        return await asyncio.open_connection(host, port, limit=PUMP_LENGTH)


async def pipe(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    early: bytes = b"",
) -> int:
    """Relay until both sides are done; returns the bytes moved (both directions)."""
    upstream_reader, upstream_writer = upstream
    moved = [len(early)]
    if early:
        upstream_writer.write(early)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pump(client_reader, upstream_writer, moved))
            group.create_task(_pump(upstream_reader, client_writer, moved))
    except* (ConnectionError, OSError):
        pass
    finally:
        upstream_writer.close()
    return moved[0]


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, moved: list[int]
) -> None:
    while data := await reader.read(PUMP_LENGTH):
        writer.write(data)
        moved[0] += len(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
