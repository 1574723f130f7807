"""``PieceStream``: one piece written to its task as it arrives, recorded once verified.

``TaskStorage.write_piece`` takes a whole piece: a daemon receiving ``concurrent_pieces``
pieces from parents held them all in memory until each was complete (8 x 4 MiB, most of a
node's memory growth during a download; issue 15). A stream hashes each part and writes it at
its place in the content file (``TaskStorage.write_part``), so a piece in flight holds only
the part being received; ``finish`` compares the digest of every byte received with the
expected one and only then records the piece (``TaskStorage.record_streamed``).

What does not change: a piece is recorded, served and counted only after its digest matched;
a recorded piece's bytes are never overwritten (a part of a piece held meanwhile is skipped,
and the stream then ends with the held record or nothing); parts are written in order, from
the bytes hashed, so a recorded streamed piece is vouched for as a whole write
(``piece_index.py``). Two streams of one piece (endgame twins) write the same range: the one
that records it hashes the range in the file again first (``finish(check_file=True)``), so
a bad twin's parts mixed in are never recorded. What does: the file may hold bytes of a piece
that later failed its digest or was cut short, in a range no record covers, overwritten when
the piece is fetched again (as a torn write left it before).

The task's output taps (``TaskStorage.output_taps``: a download's staged output,
``staging.py``) as the stream starts get every part written too, from the buffer just hashed,
and the digest of the whole piece before it is recorded.

Call ``write`` and ``finish`` from one worker thread at a time (they do file I/O and hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from damselfly.core.digests import PieceHasher
from damselfly.core.errors import PieceDigestError
from damselfly.core.pieces import Piece, piece_at

if TYPE_CHECKING:
    from damselfly.storage.metadata import PieceMeta
    from damselfly.storage.task_storage import TaskStorage


class OutputTap(Protocol):
    """Where a task's pieces are written as well as they arrive (``StagedOutput``)."""

    def tap_part(
        self, task_id: str, writer: object, piece: Piece, offset: int, chunks: Sequence[memoryview]
    ) -> None: ...

    def tap_end(self, task_id: str, writer: object, piece: Piece, digest: str | None) -> None: ...


class PieceStream:
    def __init__(self, task: TaskStorage, number: int) -> None:
        self._task = task
        self._taps = task.output_taps
        self._piece = piece_at(number, task.content_length, task.piece_length)
        self._hasher = PieceHasher()
        self._received = 0
        self._skipped = False  # a part not written: the piece was held by then
        self._writes_before: int | None = None  # the piece's writes in the Store before ours
        self._written = 0  # parts this stream wrote

    @property
    def number(self) -> int:
        return self._piece.number

    def write(self, chunks: Sequence[memoryview]) -> None:
        """The next bytes of the piece: hashed, then written after those before them."""
        offset = self._count(chunks)
        if self._writes_before is None:
            self._writes_before = self._task.writes_of(self.number)
        if self._task.write_part(self.number, offset, chunks):
            self._written += 1
        else:
            self._skipped = True
        for tap in self._taps:
            tap.tap_part(self._task.task_id, self, self._piece, offset, chunks)

    def skip(self, chunks: Sequence[memoryview]) -> None:
        """The next bytes, hashed but not written (the caller knows another writer is
        recording the piece): the stream can then only end with the held record or None."""
        self._count(chunks)
        self._skipped = True

    def finish(self, expected_digest: str, *, check_file: bool = False) -> PieceMeta | None:
        """Record the piece if its bytes match ``expected_digest`` (else
        ``PieceDigestError``); None if the file does not hold them (see
        ``TaskStorage.record_streamed``). ``check_file``: another stream wrote parts of the
        same piece meanwhile (an endgame twin), so the file's bytes are hashed again."""
        if self._received != self._piece.length:
            raise ValueError(f"piece {self.number}: {self._received} of {self._piece.length} bytes")
        digest = self._ended(expected_digest)
        if digest != expected_digest:
            raise PieceDigestError(self.number, expected_digest, digest)
        whole = not self._skipped
        return self._task.record_streamed(self.number, digest, whole=whole, check_file=check_file)

    def record_as_read(self) -> PieceMeta | None:
        """Record the piece with the digest of the bytes received: the origin reader's own
        piece, which nothing earlier vouches for (``finish`` without the comparison). If
        anyone else wrote parts of it meanwhile (a parent's stream of the same piece, whose
        bad bytes may sit between ours), the file's range is hashed again first."""
        if self._received != self._piece.length:
            raise ValueError(f"piece {self.number}: {self._received} of {self._piece.length} bytes")
        digest = self._ended()
        return self._task.record_streamed(
            self.number, digest, whole=not self._skipped, check_file=self._others_wrote()
        )

    @property
    def tapped(self) -> bool:
        """Does the task have output taps this stream writes to?"""
        return bool(self._taps)

    def end_taps(self, expected_digest: str) -> None:
        """A stream not recorded (another stream recorded the piece, or is recording it):
        the taps still learn whether its bytes were the piece's."""
        if self._received == self._piece.length:
            self._ended(expected_digest)

    def _ended(self, expected_digest: str | None = None) -> str:
        """The whole piece's digest, told to the taps first (None to them: not the one
        expected, so not the piece's bytes)."""
        digest = self._hasher.digest()
        good = expected_digest is None or digest == expected_digest
        for tap in self._taps:
            tap.tap_end(self._task.task_id, self, self._piece, digest if good else None)
        return digest

    def _others_wrote(self) -> bool:
        before = self._writes_before or 0
        return self._task.writes_of(self.number) != before + self._written

    def digest(self) -> str:
        """The digest of the bytes received so far."""
        return self._hasher.digest()

    def _count(self, chunks: Sequence[memoryview]) -> int:
        """Hash the next bytes; the offset in the file they go to."""
        length = sum(chunk.nbytes for chunk in chunks)
        if self._received + length > self._piece.length:
            raise ValueError(f"piece {self.number}: more than {self._piece.length} bytes")
        for chunk in chunks:
            self._hasher.update(chunk)
        offset = self._piece.offset + self._received
        self._received += length
        return offset
