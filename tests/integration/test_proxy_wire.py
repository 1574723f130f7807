"""``HttpConnection`` on a real loopback socket: a large body goes to the transport in slices
of at most ``SEND_LENGTH`` bytes (one 4 MiB write costs far more CPU per byte under TLS) and
arrives byte for byte, framed as h11 says."""

from __future__ import annotations

import asyncio
import os

import h11

from damselfly.daemon.proxy.wire import SEND_LENGTH, HttpConnection

BODY = os.urandom(3 * SEND_LENGTH + 5)


class RecordingWriter:
    """The real ``StreamWriter``, with the length of every buffer it was handed."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.lengths: list[int] = []

    def writelines(self, data: list[bytes]) -> None:
        self.lengths.extend(len(piece) for piece in data)
        self._writer.writelines(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)


async def test_a_large_body_goes_out_in_slices_and_arrives_whole() -> None:
    writers: list[RecordingWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        recording = RecordingWriter(writer)
        writers.append(recording)
        conn = HttpConnection(reader, recording)  # type: ignore[arg-type]
        assert await conn.read_request(5, 5) is not None
        await conn.drain_body()
        await conn.send_head(200, [("Content-Length", str(len(BODY)))])
        await conn.send_data(BODY)
        await conn.send_end()
        await conn.aclose()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/f", headers=[("Host", "x")]))
    client.receive_data(raw)
    client.receive_data(b"")
    events = []
    while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
        events.append(event)
        if isinstance(event, h11.ConnectionClosed):
            break
    assert isinstance(events[0], h11.Response)
    assert events[0].status_code == 200
    assert b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data)) == BODY
    body_writes: list[int] = []  # the last writes, which carried the body
    for length in reversed(writers[0].lengths):
        if sum(body_writes) >= len(BODY):
            break
        body_writes.append(length)
    assert max(body_writes) <= SEND_LENGTH
    assert sum(body_writes) == len(BODY)
