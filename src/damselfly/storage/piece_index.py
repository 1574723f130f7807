"""``PieceIndex``: the recorded pieces of one open task, kept in memory.

Every query on an open task (which pieces are held, a piece's record, is it complete) used to
be a query of the metadata store: ``finished_pieces`` a scan of the task's piece rows, asked
by the piece server's bitmap watch at every wake-up (one per stored piece, per watcher), so a
task of n pieces cost O(n^2) row reads. Now a ``Store`` keeps one ``PieceIndex`` per task it
has open, shared by every handle of that task (the daemon's engine writing and its piece
server reading are two handles): loaded from the metadata store when the first handle opens
(after the pieces were re-verified), changed by this ``Store``'s own records and drops, and
dropped with the last handle.

The metadata store stays the truth, written at once on every change; the index is a view of
it that the ``Store`` keeps current for everything this process does. What another process
records on the same task (a standalone dfget next to dfdaemon) reaches the index two ways: a
lookup of one piece the index lacks asks the store for that row (an indexed read, not a scan),
and ``TaskStorage.refresh`` reloads the whole view (the piece server's watch does so, through
``catch_up``, at most once per poll interval and only after another process committed to the
metadata store). A piece another process *drops* stays in the view until that reload; serving
it re-checks its bytes anyway unless this daemon wrote and verified them
(``daemon/servers/upload_server.py``).

**Pieces written here.** The index also knows which pieces this ``Store`` wrote itself: hashed
in memory and written completely (``write_started`` ... ``write_finished``), so their bytes
on disk are the ones verified, unless someone else wrote to the file since. It answers
``vouches_for(number, stamp)``: the piece was written here, is not being written now (a
rewrite in progress, or a torn one, is never vouched for), and the file's change stamp
(``ContentFile.change_stamp``: inode, size, mtime, ctime, links) is the one taken when the last of
our writes ended, or one of our writes is still running. That last case is the trade-off: a
foreign write to the file *while* this process writes it is not noticed until our writes
pause (it was not noticed before either: the stamp taken after our next write included it).
The piece server serves what the index vouches for with ``sendfile`` and re-hashes the rest.

Thread-safe: pieces are recorded from worker threads while the event loop reads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable

from damselfly.storage.metadata import PieceMeta

PIECE_LOCK_STRIPES = 64


class PieceIndex:
    def __init__(self, pieces: Iterable[PieceMeta] = ()) -> None:
        self._lock = threading.Lock()
        # one lock per piece stripe for every handle of the task in this ``Store``: a check
        # that a piece is not held and the write after it exclude another handle's record
        self.piece_locks = tuple(threading.Lock() for _ in range(PIECE_LOCK_STRIPES))
        self._pieces = {piece.number: piece for piece in pieces}
        self._numbers: frozenset[int] | None = None  # cached answer of ``numbers``
        self.version = 0  # bumped by every change: a watcher compares it to skip work
        self._written_here: set[int] = set()  # hashed and written whole by this Store
        self._writing: Counter[int] = Counter()  # being written by this Store now
        self._writes: Counter[int] = Counter()  # writes of each piece ever started here
        self._stamp_after_writes: Hashable = None  # the file's change stamp when they ended
        self.others_seen: int | None = None  # the store's ``others_changes`` at the last load
        self.local_changes = 0  # records and drops by this Store (a reload's scan may miss one)

    def get(self, number: int) -> PieceMeta | None:
        return self._pieces.get(number)

    def numbers(self) -> frozenset[int]:
        with self._lock:
            if self._numbers is None:
                self._numbers = frozenset(self._pieces)
            return self._numbers

    def __len__(self) -> int:
        return len(self._pieces)

    def recorded(self, piece: PieceMeta) -> None:
        with self._lock:
            self.local_changes += 1
            if self._pieces.get(piece.number) != piece:
                self._pieces[piece.number] = piece
                self._changed()

    def dropped(self, number: int) -> None:
        with self._lock:
            self.local_changes += 1
            self._written_here.discard(number)
            if self._pieces.pop(number, None) is not None:
                self._changed()

    # -- pieces written here --------------------------------------------------------------

    def write_started(self, number: int) -> None:
        with self._lock:
            self._writing[number] += 1
            self._writes[number] += 1
            self._written_here.discard(number)  # its bytes are about to change

    def write_finished(self, number: int, *, whole: bool, stamp: Callable[[], Hashable]) -> None:
        """``whole``: every byte was written (the bytes hashed before). ``stamp`` is taken
        here, under the lock, when no other write of ours is running."""
        with self._lock:
            self._writing[number] -= 1
            if self._writing[number] <= 0:
                del self._writing[number]
            if whole and number not in self._writing:
                self._written_here.add(number)
            if not self._writing:
                self._stamp_after_writes = stamp()

    def writes_of(self, number: int) -> int:
        """How many writes of ``number`` this ``Store`` has started: a stream that counts its
        own can tell whether anyone else wrote parts of the piece meanwhile."""
        with self._lock:
            return self._writes[number]

    def written_whole(self, number: int) -> None:
        """Every byte of ``number`` was written here, in parts (``write_started`` ...
        ``write_finished(whole=False)`` each), from the bytes hashed: vouch for it as for a
        whole write, under the stamp taken after the last of them."""
        with self._lock:
            if number not in self._writing:
                self._written_here.add(number)

    def restamped(self, before: Hashable, after: Hashable) -> None:
        """We moved the file's mtime ourselves (``stamp_fingerprint``), its bytes unchanged:
        what we vouched for under ``before`` still holds under ``after``."""
        with self._lock:
            if not self._writing and self._stamp_after_writes == before:
                self._stamp_after_writes = after

    def vouches_for(self, number: int, stamp_now: Hashable) -> bool:
        with self._lock:
            if number not in self._written_here or number in self._writing:
                return False
            return bool(self._writing) or stamp_now == self._stamp_after_writes

    def forget_writes(self) -> None:
        """The file was replaced (``shared_content.unshared``): vouch for nothing written before."""
        with self._lock:
            self._written_here.clear()

    def replace(
        self,
        pieces: Iterable[PieceMeta],
        others_seen: int | None = None,
        local_before: int | None = None,
    ) -> None:
        """Reload from the metadata store (another process may have changed it):
        ``others_seen`` is its ``others_changes`` and ``local_before`` this index's
        ``local_changes``, both read before the pieces were. A record or drop of ours that
        landed meanwhile may be missing from ``pieces``, so the next ``catch_up`` reloads."""
        fresh = {piece.number: piece for piece in pieces}
        with self._lock:
            raced = local_before is not None and local_before != self.local_changes
            self.others_seen = None if raced else others_seen
            self._written_here &= fresh.keys()
            if fresh != self._pieces:
                self._pieces = fresh
                self._changed()

    def _changed(self) -> None:
        self._numbers = None
        self.version += 1
