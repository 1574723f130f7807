"""Piece digests of one task, as reported by its origin readers.

Rules (docs/p2p.md, "Digests"):

1. Only an *origin reader* may report digests: the seed the scheduler sent a job to, or a peer
   it told ``BACK_TO_SOURCE``. Digests from anyone else are ignored and counted: a parent's
   claim about its own bytes proves nothing.
2. The first digest recorded for a piece wins. A later, different digest for the same piece is
   a conflict: logged and counted, never applied (a second origin reader saw other bytes, or
   lies; either way peers keep verifying against the first).
3. After a scheduler restart nobody is an origin reader; the first host that re-announces the
   task as its origin reader (``TaskHolding.origin_reader``) becomes one and its digests are
   restored. Claims for a task that already had a reader in this scheduler's lifetime are
   ignored. This trusts the first claimant after a restart: the
   price of keeping no database.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from damselfly.protocol.messages import PieceDigest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestOffer:
    """What happened to the digests one report carried."""

    accepted: int = 0
    ignored: int = 0  # the reporter is not an origin reader
    conflicts: tuple[int, ...] = ()  # piece numbers whose digest differed from the first


class TaskDigests:
    def __init__(self, task_id: str, piece_count: int) -> None:
        self.task_id = task_id
        self.piece_count = piece_count
        self._digests: dict[int, str] = {}
        self._numbers: list[int] = []  # sorted keys of _digests, for paging
        self._readers: set[str] = set()
        self._had_reader = False

    @property
    def readers(self) -> frozenset[str]:
        return frozenset(self._readers)

    @property
    def had_reader(self) -> bool:
        """Someone was chosen to read the origin for this task in this scheduler's life."""
        return self._had_reader

    def is_reader(self, peer_id: str) -> bool:
        return peer_id in self._readers

    def reader_chosen(self, peer_id: str) -> None:
        self._readers.add(peer_id)
        self._had_reader = True

    def reader_gone(self, peer_id: str) -> None:
        """The reader left; the digests it reported stay."""
        self._readers.discard(peer_id)

    def offered(self, peer_id: str, digests: Iterable[PieceDigest]) -> DigestOffer:
        offered = list(digests)
        if not offered:
            return DigestOffer()
        if peer_id not in self._readers:
            log.info("ignored %d digests for task %s from %s: not an origin reader",
                     len(offered), self.task_id[:12], peer_id)  # fmt: skip
            return DigestOffer(ignored=len(offered))
        return self._record(peer_id, offered)

    def restored(self, peer_id: str, digests: Iterable[PieceDigest]) -> DigestOffer:
        """A host re-announced the task as its origin reader (after a scheduler restart).

        Accepted only while this scheduler has never chosen a reader for the task.
        """
        if not self._had_reader:
            self.reader_chosen(peer_id)
        return self.offered(peer_id, digests)

    def _record(self, peer_id: str, digests: list[PieceDigest]) -> DigestOffer:
        accepted, conflicts = 0, []
        for item in digests:
            known = self._digests.get(item.number)
            if known is None:
                self._digests[item.number] = item.digest
                bisect.insort(self._numbers, item.number)
                accepted += 1
            elif known != item.digest:
                conflicts.append(item.number)
        if conflicts:
            log.warning("task %s: %d conflicting piece digests from %s (first: piece %d); "
                        "kept the first reported", self.task_id[:12], len(conflicts), peer_id,
                        conflicts[0])  # fmt: skip
        return DigestOffer(accepted=accepted, conflicts=tuple(conflicts))

    def get(self, number: int) -> str | None:
        return self._digests.get(number)

    def page(self, from_piece: int, limit: int) -> tuple[tuple[PieceDigest, ...], bool]:
        """Known digests from ``from_piece`` on, ascending, at most ``limit``; and truncated."""
        start = bisect.bisect_left(self._numbers, from_piece)
        numbers = self._numbers[start : start + limit]
        page = tuple(PieceDigest(n, self._digests[n]) for n in numbers)
        return page, start + limit < len(self._numbers)

    def __len__(self) -> int:
        return len(self._digests)
