"""``TaskStorage``: one open task, its pieces written at their offsets and recorded.

Obtained from ``Store.open_task`` (re-exported from ``damselfly.storage.store``). Every method
is safe to call from several threads at once: bytes go through ``pread``/``pwrite`` on one
descriptor (no shared file position), records through the thread-safe ``MetadataStore``, and
writes of the same piece number are serialised by a striped lock.

What is held is answered from the task's ``PieceIndex`` (``piece_index.py``), an in-memory view
of the metadata store shared by every handle of the task in one ``Store`` and kept current by
their records and drops: no query of the metadata store per question. Pieces recorded by
another process working on the same task (dfget next to dfdaemon) show up when one is looked
up by number (a miss asks the store for that row) and at ``refresh``.

A piece is recorded only after its bytes are written; ``write_piece`` of a piece already held
with the same bytes is a no-op that returns the existing record. A piece received from a
parent may also be written in parts as it arrives (``piece_stream.py``) and recorded once its
digest matched. Reads do not re-hash: a
reader that serves pieces to other peers relies on the peer checking the digest it was given.

``mark_succeeded`` also records the content file's fingerprint (``task_verified``), so the next
``Store.open_task`` can skip re-verification; ``write_piece`` and ``drop_piece`` clear it
through their metadata events (``piece_finished``, ``piece_dropped``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from damselfly.core.digests import Hasher, piece_digest_of_chunks
from damselfly.core.errors import PieceDigestError, StorageError
from damselfly.core.pieces import ByteRange, Piece, piece_at, piece_count, pieces_in_range
from damselfly.storage.content import ContentFile
from damselfly.storage.metadata import MetadataStore, PieceMeta, PieceNotHeldError
from damselfly.storage.piece_index import PieceIndex

if TYPE_CHECKING:
    from damselfly.storage.piece_stream import OutputTap


class TaskStorage:
    """One open task; close it (or use ``with``) to unpin it."""

    def __init__(
        self,
        task_id: str,
        *,
        content_length: int,
        piece_length: int,
        content: ContentFile,
        metadata: MetadataStore,
        index: PieceIndex | None = None,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        """``index``: the view shared with the task's other handles (``Store.open_task``);
        None: one of its own, loaded now."""
        self.task_id = task_id
        self.content_length = content_length
        self.piece_length = piece_length
        self.piece_count = piece_count(content_length, piece_length)
        self.content_path: Path = content.path
        self._content = content
        self._metadata = metadata
        self._index = PieceIndex(metadata.pieces(task_id)) if index is None else index
        self._on_close = on_close
        self._taps: tuple[OutputTap, ...] = ()
        self._close_lock = threading.Lock()
        self._closed = False

    # -- queries -------------------------------------------------------------------------------

    def has_piece(self, number: int) -> bool:
        return self.piece_meta(number) is not None

    def finished_pieces(self) -> frozenset[int]:
        self._check_open()
        return self._index.numbers()

    def piece_meta(self, number: int) -> PieceMeta | None:
        """The piece's record; one the view lacks is asked of the store (another process may
        have recorded it) and kept."""
        self._check_open()
        piece = self._index.get(number)
        if piece is None:
            piece = self._metadata.get_piece(self.task_id, number)
            if piece is not None:
                self._index.recorded(piece)
        return piece

    @property
    def is_complete(self) -> bool:
        self._check_open()
        return len(self._index) == self.piece_count

    @property
    def version(self) -> int:
        """Changes whenever the set of held pieces may have (cheap to compare)."""
        return self._index.version

    def refresh(self) -> None:
        """Reload the view from the metadata store: pieces another process recorded or
        dropped since, or this one's store changed behind the view. One scan of the task's
        rows."""
        self._check_open()
        seen, local = self._metadata.others_changes(), self._index.local_changes
        self._index.replace(self._metadata.pieces(self.task_id), seen, local)

    def catch_up(self) -> None:
        """``refresh`` if another process (or ``Store``) committed a change to the metadata
        since the view was last loaded: without one, a cheap check instead of the scan (the
        piece server's watch asks every poll interval, per watcher)."""
        self._check_open()
        if self._metadata.others_changes() != self._index.others_seen:
            self.refresh()

    # -- writes --------------------------------------------------------------------------------

    @property
    def output_taps(self) -> tuple[OutputTap, ...]:
        """Where pieces streamed into this handle are written as well (``piece_stream.py``)."""
        return self._taps

    def add_output_tap(self, tap: OutputTap) -> None:
        self._taps = (*self._taps, tap)

    def remove_output_tap(self, tap: OutputTap) -> None:
        self._taps = tuple(t for t in self._taps if t is not tap)

    def write_piece(
        self,
        number: int,
        data: PieceData,
        *,
        expected_digest: str | None = None,
    ) -> PieceMeta:
        """Verify, write at the piece's offset, record; see the module docstring.

        ``data`` is the piece's bytes, or a sequence of chunks that make it up (written with
        one ``pwritev``, never joined in memory)."""
        piece = self._piece(number)
        chunks = _as_chunks(data)
        length = sum(chunk.nbytes for chunk in chunks)
        if length != piece.length:
            raise ValueError(f"piece {number}: expected {piece.length} bytes, got {length}")
        digest = piece_digest_of_chunks(chunks)
        if expected_digest is not None and expected_digest != digest:
            raise PieceDigestError(number, expected_digest, digest)
        with self._piece_lock(number):
            held = self.piece_meta(number)
            if held is not None and self._still_valid(held):
                if held.digest == digest:
                    return held
                raise PieceDigestError(number, held.digest, digest, source="bytes already held")
            if held is not None:
                # damaged: unrecorded while it is rewritten, so a torn rewrite is never served
                self._metadata.piece_dropped(self.task_id, number)
                self._index.dropped(number)
            self._write_whole(number, piece.offset, chunks)
            meta = PieceMeta(number, piece.offset, piece.length, digest)
            self._metadata.piece_finished(self.task_id, meta)
            self._index.recorded(meta)
            return meta

    def write_part(self, number: int, offset: int, chunks: Sequence[memoryview]) -> bool:
        """Bytes of a piece still being received (``piece_stream.py``), at ``offset`` in the
        file; not recorded. False, nothing written, once the piece is held: within this
        ``Store`` a recorded piece's bytes are never overwritten with bytes not yet verified.
        Another process recording the piece between the check and the write (a standalone
        dfget on the same task and store) is not excluded: the bytes it recorded may then be
        overwritten; serving re-hashes them (they are not vouched for) and delivery re-hashes
        every piece, so the damage is a failed download, never a wrong file."""
        with self._piece_lock(number):
            if self.piece_meta(number) is not None:
                return False
            self._check_unshared()
            self._index.write_started(number)
            try:
                self._content.write_chunks_at(offset, chunks)
            finally:
                self._index.write_finished(number, whole=False, stamp=self._content.change_stamp)
        return True

    def writes_of(self, number: int) -> int:
        """Writes of piece ``number`` started through this ``Store`` (``PieceIndex``)."""
        return self._index.writes_of(number)

    def record_streamed(
        self, number: int, digest: str, *, whole: bool, check_file: bool = False
    ) -> PieceMeta | None:
        """Record a piece whose verified bytes ``write_part`` wrote (``whole``: every part;
        ``check_file``: another writer wrote parts of it too, so hash the file's range
        again first); a piece held meanwhile is returned as ``write_piece`` would; None if
        the file does not hold those bytes (parts skipped, or overwritten)."""
        piece = self._piece(number)
        with self._piece_lock(number):
            held = self.piece_meta(number)
            if held is not None:
                if held.digest == digest:
                    return held
                raise PieceDigestError(number, held.digest, digest, source="bytes already held")
            if not whole or (check_file and not self._holds(piece, digest)):
                return None
            meta = PieceMeta(number, piece.offset, piece.length, digest)
            self._metadata.piece_finished(self.task_id, meta)
            self._index.recorded(meta)
            self._index.written_whole(number)
            return meta

    def vouches_for(self, number: int) -> bool:
        """Were this piece's bytes hashed and written whole by this ``Store``, with no write
        to the file by anyone else since (``piece_index.py``)? Then serving it needs no
        re-hash."""
        self._check_open()
        return self._index.vouches_for(number, self._content.change_stamp())

    def _write_whole(self, number: int, offset: int, chunks: list[memoryview]) -> None:
        self._check_unshared()
        self._index.write_started(number)
        whole = False
        try:
            self._content.write_chunks_at(offset, chunks)
            whole = True
        finally:
            self._index.write_finished(number, whole=whole, stamp=self._content.change_stamp)

    def drop_piece(self, number: int) -> None:
        self._check_open()
        with self._piece_lock(number):
            self._metadata.piece_dropped(self.task_id, number)
            self._index.dropped(number)

    def mark_succeeded(self) -> None:
        self.refresh()  # counted against the store: another process may have added pieces
        held = len(self.finished_pieces())
        if held != self.piece_count:
            raise StorageError(
                f"task {self.task_id}: cannot succeed with {held} of {self.piece_count} pieces"
            )
        self._metadata.task_succeeded(self.task_id)
        self._record_fingerprint()

    def mark_failed(self) -> None:
        self._check_open()
        self._metadata.task_failed(self.task_id)

    def _check_unshared(self) -> None:
        """Never write into a file an output shares, nor into one the store let go of for a
        private copy (then only the output names it) (``shared_content.py``)."""
        if not self._writable_here():
            raise StorageError(
                f"task {self.task_id}: its file is now also a delivered output; not written"
            )

    def still_at_path(self) -> bool:
        """Whether this handle's file is still the store's (``ContentFile.still_at_path``)."""
        return self._content.still_at_path()

    def shared_with_output(self) -> bool:
        """A delivered output may write this file (``shared_content.py``)."""
        return not self._writable_here()

    def _writable_here(self) -> bool:
        return self._content.links() == 1 and self._content.still_at_path()

    def release_space(self) -> None:
        """Give the task's space back after a failure it cannot resume from (a full disk,
        a bad whole file): the content file is cut to 0 bytes first (that never needs space,
        and its logical size, the quota's reservation, goes with it), then its pieces are
        forgotten and the task marked failed. The next open re-extends the file (or, if a
        delivered output shares it, replaces it: ``Store.open_task``)."""
        self._check_open()
        if self._writable_here():  # never cut a file an output shares (a hard link)
            self._content.resize(0)
        for number in self.finished_pieces():
            self._metadata.piece_dropped(self.task_id, number)
            self._index.dropped(number)
        self._metadata.task_failed(self.task_id)

    # -- reads ---------------------------------------------------------------------------------

    def read_piece(self, number: int) -> bytes:
        """The bytes of a held piece; ``PieceNotHeldError`` if it is not held."""
        meta = self.piece_meta(number)
        if meta is None:
            raise PieceNotHeldError(self.task_id, number)
        return self._content.read_at(meta.offset, meta.length)

    def hash_piece(self, number: int, hasher: Hasher, buffer: bytearray | None = None) -> None:
        """Feed a held piece's bytes to ``hasher`` through ``buffer`` (``ContentFile.hash_at``);
        ``PieceNotHeldError`` if it is not held."""
        meta = self.piece_meta(number)
        if meta is None:
            raise PieceNotHeldError(self.task_id, number)
        self._content.hash_at(meta.offset, meta.length, hasher, buffer)

    def read_range(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)``; every piece they touch must be held."""
        if offset < 0 or length < 0 or offset + length > self.content_length:
            raise ValueError(
                f"range {offset}+{length} is outside the content (length {self.content_length})"
            )
        wanted = pieces_in_range(ByteRange(offset, length), self.content_length, self.piece_length)
        missing = set(wanted) - self.finished_pieces()
        if missing:  # recorded by another process since the view was loaded?
            self.refresh()
            missing = set(wanted) - self.finished_pieces()
        if missing:
            raise PieceNotHeldError(self.task_id, min(missing))
        return self._content.read_at(offset, length) if length else b""

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the content file and the pin; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._content.close()
        self._on_close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> TaskStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------

    def _piece(self, number: int) -> Piece:
        self._check_open()
        try:
            return piece_at(number, self.content_length, self.piece_length)
        except IndexError as exc:
            raise ValueError(f"task {self.task_id}: {exc}") from exc

    def _holds(self, piece: Piece, digest: str) -> bool:
        try:
            return self._content.digest_at(piece.offset, piece.length) == digest
        except StorageError:
            return False

    def _still_valid(self, held: PieceMeta) -> bool:
        """A held piece whose bytes were damaged (or cut off) since may be rewritten."""
        try:
            return self._content.digest_at(held.offset, held.length) == held.digest
        except StorageError:
            return False

    def _record_fingerprint(self) -> None:
        """Vouch for the pieces just counted, unless the recorded fingerprint already does
        (a cache hit): then the file's mtime is left alone."""
        if self._metadata.verified_fingerprint(self.task_id) == self._content.fingerprint():
            return
        before = self._content.change_stamp()
        fingerprint = self._content.stamp_fingerprint()
        if fingerprint is not None:
            self._index.restamped(before, self._content.change_stamp())
            self._metadata.task_verified(self.task_id, fingerprint)

    def _piece_lock(self, number: int) -> threading.Lock:
        """Shared by every handle of the task in this ``Store`` (the index is): a part's
        "not held, so write" excludes another handle's record of the piece (a seed job's
        fill next to a peer download). Another process is not excluded: see ``write_part``."""
        locks = self._index.piece_locks
        return locks[number % len(locks)]

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"task {self.task_id}: storage is closed")


PieceData = bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]


def _as_chunks(data: PieceData) -> list[memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        return [memoryview(data).cast("B")]
    return [memoryview(chunk).cast("B") for chunk in data]
