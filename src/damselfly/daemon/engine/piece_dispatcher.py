"""Which piece to fetch next, and from which parent: the download engine's decisions, sans-IO.

The engine tells the dispatcher what happened, in event-named calls (``parent_added``,
``parent_has``, ``parent_lost``, ``piece_started``, ``piece_succeeded``, ``piece_failed``,
``piece_not_held``, ``pieces_from_origin``) and asks ``next_assignment()`` whenever a request
slot frees up. Rules:

1. Only pieces we lack and that no request is fetching are candidates, until the *endgame*
   (every missing piece already in flight): then a piece may be requested from a second
   parent, so one slow parent cannot hold back the last bytes.
2. Rarest first: among candidates, the piece held by the fewest usable parents, so rare
   pieces spread before their holders leave. Ties go by the order from ``first_piece``
   (wrapping around) in windows of ``shuffle_window`` pieces: the earlier window first, and
   inside one window an order of the dispatcher's own drawing. The file fills roughly in
   order, and peers that start together fetch different pieces from a busy parent and can
   trade them with each other (one shared order put them in lockstep: the same pieces in the
   same order from the seed). A reader streaming the file (the proxy) wants strict order:
   ``shuffle_window=1``.
3. The parent: among usable holders with a free request slot, the one with the most free
   capacity (announced free upload slots minus our requests in flight), then the fewest
   failures, then the most bytes delivered to us.
4. A parent that failed ``max_failures`` times (timeouts, refusals) is not used again for
   this task.
5. A piece that failed verification goes back to the queue, and the parent that served it
   is never asked for *that piece* again (its other pieces are still checked one by one, so
   they are safe to take). A parent that served more bad pieces than good ones, and at least
   ``max_bad_pieces``, is not used again at all (it garbles everything). A missing piece
   that some parent served bad (or dropped: it answered 404 for a piece it had announced)
   and that no other usable parent holds is ``refused``: the
   engine reads it from the origin at once (``pieces_from_origin``), instead of waiting for
   a stall; such pieces are never assigned to a parent while the origin read runs.

No I/O, no clock: the engine owns the timeouts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


def start_piece(wanted: int | None, piece_count: int) -> int:
    """Where a dispatcher starts: the reader's piece when one streams the file as it arrives
    (the proxy), else a random one."""
    if wanted is not None and 0 <= wanted < piece_count:
        return wanted
    return random.randrange(max(1, piece_count))


def dispatcher_for(
    piece_count: int, held: Iterable[int], reader_piece: int | None, *, shuffle_window: int
) -> PieceDispatcher:
    """A fill's dispatcher: from ``reader_piece`` in strict order when a reader streams the
    file, else from a random piece with the order shuffled inside windows of
    ``shuffle_window`` pieces."""
    first = start_piece(reader_piece, piece_count)
    streaming = first == reader_piece  # a valid reader piece (a random start is never None)
    return PieceDispatcher(
        piece_count,
        held,
        first_piece=first,
        shuffle_window=1 if streaming else shuffle_window,
    )


@dataclass
class ParentState:
    peer_id: str
    address: str  # http://ip:port of the parent's upload server
    held: set[int] = field(default_factory=set)
    free_slots: int = 1
    in_flight: set[int] = field(default_factory=set)
    failures: int = 0
    bad_pieces: int = 0
    good_pieces: int = 0
    delivered_bytes: int = 0
    lost: bool = False

    def usable(self, max_in_flight: int) -> bool:
        return not self.lost and len(self.in_flight) < max_in_flight

    def capacity(self) -> int:
        return self.free_slots - len(self.in_flight)


@dataclass(frozen=True, eq=False)  # identity: two requests for one piece are two assignments
class Assignment:
    number: int
    parent: ParentState


class PieceDispatcher:
    def __init__(
        self,
        piece_count: int,
        held: Iterable[int] = (),
        *,
        max_in_flight_per_parent: int = 4,
        max_failures: int = 3,
        max_bad_pieces: int = 4,
        first_piece: int = 0,
        shuffle_window: int = 1,
        seed: int | None = None,  # the shuffle's (None: from the OS; a test's replays: fixed)
    ) -> None:
        self.piece_count = piece_count
        self._first_piece = first_piece % piece_count if piece_count else 0
        self._order_keys = _tie_order(piece_count, self._first_piece, shuffle_window, seed)
        self._missing = set(range(piece_count)) - set(held)
        self._in_flight: dict[int, set[str]] = {}
        self._parents: dict[str, ParentState] = {}
        self._max_in_flight = max_in_flight_per_parent
        self._max_failures = max_failures
        self._max_bad_pieces = max_bad_pieces
        self._served_bad: dict[int, set[str]] = {}  # piece -> parents that served it bad
        self._dropped: set[int] = set()  # pieces a holder turned out not to hold (404)
        self._from_origin: set[int] = set()  # pieces the engine is reading from the origin

    # -- what the engine reports ---------------------------------------------------------------

    def parent_added(
        self, peer_id: str, address: str, held: Iterable[int], free_slots: int = 1
    ) -> ParentState:
        parent = self._parents.get(peer_id)
        if parent is None or parent.lost:
            parent = self._parents[peer_id] = ParentState(peer_id, address)
        parent.address = address
        parent.free_slots = max(1, free_slots)
        parent.held |= self._valid(held)
        return parent

    def parent_has(self, peer_id: str, pieces: Iterable[int]) -> None:
        parent = self._parents.get(peer_id)
        if parent is not None:
            parent.held |= self._valid(pieces)

    def parent_lost(self, peer_id: str) -> None:
        parent = self._parents.get(peer_id)
        if parent is not None:
            parent.lost = True

    def piece_started(self, assignment: Assignment) -> None:
        assignment.parent.in_flight.add(assignment.number)
        self._in_flight.setdefault(assignment.number, set()).add(assignment.parent.peer_id)

    def piece_succeeded(self, assignment: Assignment, length: int) -> None:
        self._finish(assignment)
        assignment.parent.delivered_bytes += length
        assignment.parent.good_pieces += 1
        self._missing.discard(assignment.number)

    def piece_abandoned(self, assignment: Assignment) -> None:
        """The request ended through no fault of the parent (busy, digest not known yet)."""
        self._finish(assignment)

    def piece_not_held(self, assignment: Assignment) -> None:
        """The parent does not hold the piece after all (it dropped it, or what we were told
        was stale): not a failure; ask it again only if it announces the piece again."""
        self._finish(assignment)
        assignment.parent.held.discard(assignment.number)
        self._dropped.add(assignment.number)

    def piece_held(self, number: int) -> None:
        """The piece arrived some other way (back-to-source, a duplicate request)."""
        self._missing.discard(number)
        self._from_origin.discard(number)

    def piece_failed(self, assignment: Assignment) -> None:
        """A request failed (timeout, refusal): ``max_failures`` of them drop the parent."""
        self._finish(assignment)
        parent = assignment.parent
        parent.failures += 1
        if parent.failures >= self._max_failures:
            parent.lost = True

    def piece_bad(self, assignment: Assignment) -> None:
        """The piece failed verification: back to the queue, never from this parent again."""
        self._finish(assignment)
        parent = assignment.parent
        self._served_bad.setdefault(assignment.number, set()).add(parent.peer_id)
        parent.bad_pieces += 1
        if parent.bad_pieces >= self._max_bad_pieces and parent.bad_pieces > parent.good_pieces:
            parent.lost = True

    def pieces_from_origin(self, numbers: Iterable[int]) -> None:
        """The engine reads ``numbers`` from the origin: assign them to no parent meanwhile."""
        self._from_origin |= set(numbers) & self._missing

    def origin_read_ended(self) -> None:
        """The origin read ended (its pieces were reported ``piece_held``, or it failed)."""
        self._from_origin.clear()

    # -- what the engine asks ------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return not self._missing

    @property
    def missing(self) -> frozenset[int]:
        return frozenset(self._missing)

    def parent(self, peer_id: str) -> ParentState | None:
        return self._parents.get(peer_id)

    def usable_parents(self) -> list[ParentState]:
        return [p for p in self._parents.values() if not p.lost]

    def unavailable(self) -> frozenset[int]:
        """Missing pieces that no usable parent holds (a bad copy does not count)."""
        return frozenset(n for n in self._missing if not self._good_holders(n))

    def refused(self) -> frozenset[int]:
        """Missing pieces a parent served bad (or dropped) that no other usable parent holds,
        not being fetched nor read from the origin: only the origin can give them now."""
        return frozenset(
            n
            for n in self._served_bad.keys() | self._dropped
            if n in self._missing
            and n not in self._in_flight
            and n not in self._from_origin
            and not self._good_holders(n)
        )

    def next_assignment(self) -> Assignment | None:
        """The rarest wanted piece (fewest usable holders; ties by the tie order), from its
        preferred holder; in the endgame (every wanted piece in flight) a second request for
        one. Holders are counted with set intersections and a ``Counter`` (C loops), the few
        exclusions (a parent that served the piece bad, or is fetching it) subtracted after:
        it runs for every request, and a scan of every parent per piece took ~5 % of a swarm
        node's CPU (issue 15)."""
        wanted = self._missing - self._from_origin
        candidates = wanted - self._in_flight.keys() or wanted  # else: the endgame
        usable = [p for p in self._parents.values() if p.usable(self._max_in_flight)]
        counts: Counter[int] = Counter()
        for parent in usable:
            counts.update(parent.held & candidates)
        for number in (self._served_bad.keys() | self._in_flight.keys()) & counts.keys():
            counts[number] = len(self._holders(number, usable))  # the exclusions, counted out
            if not counts[number]:
                del counts[number]
        if not counts:
            return None
        fewest = min(counts.values())
        number = min(
            (n for n, c in counts.items() if c == fewest), key=self._order_keys.__getitem__
        )
        return Assignment(number, max(self._holders(number, usable), key=_preference))

    # -- helpers -------------------------------------------------------------------------------

    def _holders(self, number: int, usable: list[ParentState]) -> list[ParentState]:
        """Of ``usable``, the parents holding ``number`` that may be asked for it: not one
        that served it bad, nor one already fetching it."""
        excluded = self._served_bad.get(number, set()) | self._in_flight.get(number, set())
        return [p for p in usable if number in p.held and p.peer_id not in excluded]

    def _good_holders(self, number: int) -> list[ParentState]:
        """Usable parents holding ``number`` that never served it bad (busy or not)."""
        served_bad = self._served_bad.get(number, set())
        return [
            parent
            for parent in self._parents.values()
            if not parent.lost and number in parent.held and parent.peer_id not in served_bad
        ]

    def _finish(self, assignment: Assignment) -> None:
        assignment.parent.in_flight.discard(assignment.number)
        fetching = self._in_flight.get(assignment.number)
        if fetching is not None:
            fetching.discard(assignment.parent.peer_id)
            if not fetching:
                del self._in_flight[assignment.number]

    def _valid(self, pieces: Iterable[int]) -> set[int]:
        return {n for n in pieces if 0 <= n < self.piece_count}


def _tie_order(piece_count: int, first_piece: int, window: int, seed: int | None) -> list[int]:
    """Each piece's place in the tie order (a permutation of ``range(piece_count)``): by
    distance from ``first_piece``, shuffled inside consecutive windows of ``window`` pieces."""
    window = max(1, window)
    by_distance = [(first_piece + i) % piece_count for i in range(piece_count)]
    rng = random.Random(seed)
    for start in range(0, piece_count, window):
        chunk = by_distance[start : start + window]
        rng.shuffle(chunk)
        by_distance[start : start + window] = chunk
    keys = [0] * piece_count
    for place, number in enumerate(by_distance):
        keys[number] = place
    return keys


def _preference(parent: ParentState) -> tuple[int, int, int]:
    return (parent.capacity(), -(parent.failures + parent.bad_pieces), parent.delivered_bytes)
