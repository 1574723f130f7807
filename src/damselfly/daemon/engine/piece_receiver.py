"""``PieceReceiver``: one piece from one parent into the task, verified, for ``PeerDownload``.

A piece is streamed to disk as it arrives (``storage/piece_stream.py``): parts of at least
``PART_LENGTH`` bytes are hashed and written in a worker thread before the rest is read, so
``concurrent_pieces`` pieces in flight hold a part each in memory, not a whole piece each
(issue 15: 8 x 4 MiB was most of a node daemon's memory growth during a download). Its digest
is asked of the origin reader's record (``piece_digests.py``) once every byte is in, and only
a match records it.

Endgame twins (the same piece asked of two parents): the first one streams; a twin that starts
while it does receives the piece whole in memory, as every piece was before, and writes it
with ``write_piece`` if it ends first (the stream's later parts are then skipped: a recorded
piece is never overwritten). Whichever ends second finds the piece held (``HELD``: counted
once) or, while the other is still recording it, gives up (``ABANDONED``: it counts it, or
fails and the piece goes back to the queue). A piece whose digest is not known yet is
abandoned too, its bytes unrecorded.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

from damselfly.core.pieces import Piece, piece_at
from damselfly.daemon.engine.piece_digests import PieceDigests
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.piece_stream import PieceStream
from damselfly.storage.store import TaskStorage
from damselfly.transport.piece_client import PieceClient

PART_LENGTH = 1024 * 1024  # bytes of a piece held before they are written
_Record = Callable[[str], PieceMeta | None]  # verify against a digest and record; None: cannot


class Outcome(enum.Enum):
    STORED = "stored"  # verified, written and recorded by this receiver
    HELD = "held"  # already held when it arrived (a twin or another writer was first)
    ABANDONED = "abandoned"  # not recorded: its digest is unknown yet, or a twin records it


@dataclass(frozen=True)
class Receipt:
    outcome: Outcome
    meta: PieceMeta | None = None  # with STORED


class PieceReceiver:
    def __init__(
        self, task: TaskStorage, pieces: PieceClient, digests: PieceDigests, piece_timeout: float
    ) -> None:
        self._task = task
        self._pieces = pieces
        self._digests = digests
        self._piece_timeout = piece_timeout
        self._streaming: set[int] = set()  # pieces being streamed to disk (one at a time)
        self._recording: set[int] = set()  # pieces being verified and recorded now

    async def receive(self, parent: str, number: int) -> Receipt:
        """Piece ``number`` from ``parent``; the piece client's and the store's errors (a
        ``PieceDigestError`` for bytes that do not match) propagate."""
        piece = piece_at(number, self._task.content_length, self._task.piece_length)
        if number in self._streaming:
            return await self._receive_whole(parent, piece)
        self._streaming.add(number)
        try:
            return await self._receive_streamed(parent, piece)
        finally:
            self._streaming.discard(number)

    async def _receive_streamed(self, parent: str, piece: Piece) -> Receipt:
        stream = PieceStream(self._task, piece.number)

        async def write(part: list[memoryview]) -> None:
            await asyncio.to_thread(stream.write, part)

        await self._pieces.receive_piece(
            parent,
            self._task.task_id,
            piece.number,
            piece.length,
            write,
            part_length=PART_LENGTH,
            timeout_no_bytes=self._piece_timeout,
        )
        return await self._record(piece.number, stream.finish)

    async def _receive_whole(self, parent: str, piece: Piece) -> Receipt:
        chunks = await self._pieces.fetch_piece(
            parent,
            self._task.task_id,
            piece.number,
            piece.length,
            timeout_no_bytes=self._piece_timeout,
        )

        def write(digest: str) -> PieceMeta | None:
            return self._task.write_piece(piece.number, chunks, expected_digest=digest)

        return await self._record(piece.number, write)

    async def _record(self, number: int, record: _Record) -> Receipt:
        digest = await self._digests.digest_for(number)
        if digest is None or number in self._recording:
            return Receipt(Outcome.ABANDONED)
        if self._task.has_piece(number):
            return Receipt(Outcome.HELD)
        self._recording.add(number)
        try:
            meta = await asyncio.to_thread(record, digest)
        finally:
            self._recording.discard(number)
        return Receipt(Outcome.STORED, meta) if meta is not None else Receipt(Outcome.ABANDONED)
