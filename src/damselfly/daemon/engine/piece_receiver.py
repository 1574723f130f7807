"""``PieceReceiver``: one piece from one parent into the task, verified, for ``PeerDownload``.

A piece is streamed to disk as it arrives (``storage/piece_stream.py``): parts of at least
``PART_LENGTH`` bytes are hashed and written in a worker thread before the rest is read, so
``concurrent_pieces`` pieces in flight hold a part each in memory, not a whole piece each
(issue 15: 8 x 4 MiB was most of a node daemon's memory growth during a download). Its digest
is asked of the origin reader's record (``piece_digests.py``) once every byte is in, and only
a match records it.

Endgame twins (the same piece asked of two parents, which in a swarm that follows its seed
is most pieces) stream too, into the same range of the file: the first to end records the
piece after hashing that range again (``check_file``: a bad twin's parts may be mixed in; if
so nothing is recorded and the piece goes back to the queue), and from then on no twin writes
a part of it. The other finds the piece held (``HELD``: counted once) or, while the first is
still recording it, gives up (``ABANDONED``: that one counts it, or fails and the piece goes
back to the queue). A piece whose digest is not known yet is abandoned too, its bytes
unrecorded. A twin that records nothing still tells the task's output taps whether its bytes
were the piece's (``PieceStream.end_taps``): it may be the one that wrote the staged output's
copy of the piece (``storage/staging.py``).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass

from damselfly.core.pieces import piece_at
from damselfly.daemon.engine.piece_digests import PieceDigests
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.piece_stream import PieceStream
from damselfly.storage.store import TaskStorage
from damselfly.transport.piece_client import PieceClient

PART_LENGTH = 1024 * 1024  # bytes of a piece held before they are written


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
        self._streams: Counter[int] = Counter()  # streams of each piece running now
        self._shared: set[int] = set()  # pieces two streams wrote at once (endgame twins)
        self._recording: set[int] = set()  # pieces being verified and recorded now

    async def receive(self, parent: str, number: int) -> Receipt:
        """Piece ``number`` from ``parent``; the piece client's and the store's errors (a
        ``PieceDigestError`` for bytes that do not match) propagate."""
        self._streams[number] += 1
        if self._streams[number] > 1:
            self._shared.add(number)
        try:
            return await self._receive(parent, number)
        finally:
            self._streams[number] -= 1
            if not self._streams[number]:
                del self._streams[number]
                self._shared.discard(number)

    async def _receive(self, parent: str, number: int) -> Receipt:
        piece = piece_at(number, self._task.content_length, self._task.piece_length)
        stream = PieceStream(self._task, number)

        async def write(part: list[memoryview]) -> None:
            if number in self._recording:  # never under a twin being recorded
                stream.skip(part)
            else:
                await finished_even_if_cancelled(asyncio.to_thread(stream.write, part))

        await self._pieces.receive_piece(
            parent,
            self._task.task_id,
            number,
            piece.length,
            write,
            part_length=PART_LENGTH,
            timeout_no_bytes=self._piece_timeout,
        )
        return await self._record(number, stream)

    async def _record(self, number: int, stream: PieceStream) -> Receipt:
        digest = await self._digests.digest_for(number)
        if digest is None:
            return Receipt(Outcome.ABANDONED)
        if number in self._recording or self._task.has_piece(number):
            outcome = Outcome.ABANDONED if number in self._recording else Outcome.HELD
            if stream.tapped:  # its bytes may still be the staged output's copy of the piece
                await finished_even_if_cancelled(asyncio.to_thread(stream.end_taps, digest))
            return Receipt(outcome)
        self._recording.add(number)  # from here no twin starts writing a part of it
        check_file = number in self._shared  # a twin wrote parts too, or still may
        try:
            meta = await asyncio.to_thread(stream.finish, digest, check_file=check_file)
        finally:
            self._recording.discard(number)
        return Receipt(Outcome.STORED, meta) if meta is not None else Receipt(Outcome.ABANDONED)


async def finished_even_if_cancelled(write: Awaitable[None]) -> None:
    """``write`` (a worker thread's), waited for to its end even when the caller is cancelled:
    a cancelled ``to_thread`` returns at once while the thread goes on, and an unverified
    part landing after its stream ended would escape the twin and record checks."""
    future = asyncio.ensure_future(write)
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller sees
        raise
