"""A TCP relay that keeps every byte it forwards: "captured traffic" for the token grep.

``RecordingRelay(target)`` listens on ``listen_host`` (port ``listen_port``, 0: any) and
forwards each connection to ``target``, appending what flows either way to ``captured``.
Put it between two nodes (a daemon's ``--scheduler`` address, the manager's URL, a piece
port reached through ``--advertise-ip``) and grep ``captured`` for a secret afterwards. It
sees exactly what a wiretap on that link would: in plain text, the messages; over TLS, only
ciphertext.

    async with RecordingRelay(("127.0.0.1", 8002)) as relay:
        ... dial relay.address ...
    assert secret not in relay.captured
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

CHUNK = 64 * 1024


class RecordingRelay:
    def __init__(
        self, target: tuple[str, int], *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.target = target
        self.captured = bytearray()
        self.connections = 0
        self._listen = (listen_host, listen_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        """``host:port`` to dial instead of the target."""
        assert self._server is not None, "start the relay first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, *self._listen)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # ends every copy (the handler tasks belong to
            writer.close()  # asyncio.start_server, which must not see them cancelled)
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            await self._done(task, writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._copy(reader, up_writer), self._copy(up_reader, writer))
        except OSError:
            pass
        finally:
            await self._done(task, writer, up_writer)

    async def _done(self, task: asyncio.Task[None], *writers: asyncio.StreamWriter) -> None:
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._writers.discard(writer)
        self._pipes.discard(task)

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not writer.is_closing() and (chunk := await reader.read(CHUNK)):
            self.captured += chunk
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
