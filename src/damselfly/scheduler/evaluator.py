"""Parent selection: which peers a child should download from, best first.

Two steps with different owners:

1. **Rules** (``candidate_parents``, fixed): a candidate is a peer of the same task that is not
   the child, not reported bad by this child in the last ``bad_parent_ttl`` seconds, on a host
   that is not overloaded (no free upload slot, or no free bandwidth), and that either holds a
   piece the child lacks or is an active origin reader of the task (still downloading,
   progress within ``reader_timeout``: it will hold every piece; the child watches its
   bitmap). An active origin reader takes at most ``reader_children`` children at a time: its
   uplink carries every new piece, so the other children get those pieces from the first ones
   (which would otherwise all fetch the newest piece from the reader, each its own copy).
   Parent links may form cycles: a child only ever asks for pieces its parent already holds,
   so two peers trading pieces both ways cannot wait on each other.
2. **Scoring** (an ``Evaluator``, pluggable): a number per candidate, higher is better. The
   default (docs/p2p.md) weighs free upload capacity 0.5, pieces held 0.2, same idc 0.15,
   location prefix 0.05, host type 0.1 (a normal peer beats a seed, to spare seeds), few
   children 0.2 (so load spreads over every peer that has pieces), minus a penalty for
   failures recently reported against the parent by any child.

``select_parents`` keeps the best ``max_parents``; ties are broken at random, so children with
the same view do not all pick the same parents.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from damselfly.scheduler.failures import FailureMemory
from damselfly.scheduler.resources import Peer


class Evaluator(Protocol):
    def score(self, child: Peer, parent: Peer, now: float) -> float:
        """Higher is better; only called for candidates that passed the rules."""
        ...


@dataclass(frozen=True)
class ScoreWeights:
    upload: float = 0.5
    pieces: float = 0.2
    idc: float = 0.15
    location: float = 0.05
    host_type: float = 0.1
    spread: float = 0.2
    failure_penalty: float = 0.3


class DefaultEvaluator:
    def __init__(self, failures: FailureMemory, weights: ScoreWeights | None = None) -> None:
        self._failures = failures
        self._weights = weights or ScoreWeights()

    def score(self, child: Peer, parent: Peer, now: float) -> float:
        w = self._weights
        return (
            w.upload * parent.host.free_share
            + w.pieces * _held_share(parent)
            + w.idc * _same_idc(child, parent)
            + w.location * location_match(child.host.info.location, parent.host.info.location)
            + w.host_type * (0.0 if parent.host.is_seed else 1.0)
            + w.spread / (1 + _other_children(parent, child))
            - w.failure_penalty * self._failures.penalty(parent.peer_id, now)
        )


def _other_children(parent: Peer, child: Peer) -> int:
    return len(parent.children) - (child.peer_id in parent.children)


def _held_share(peer: Peer) -> float:
    count = peer.task.piece_count
    return 1.0 if count == 0 else peer.pieces.count / count


def _same_idc(child: Peer, parent: Peer) -> float:
    idc = child.host.info.idc
    return 1.0 if idc and idc == parent.host.info.idc else 0.0


def location_match(a: str, b: str) -> float:
    """Share of leading ``|``-separated elements in common: ``a|b|c`` vs ``a|b|d`` is 2/3."""
    if not a or not b:
        return 0.0
    left, right = a.split("|"), b.split("|")
    common = 0
    for x, y in zip(left, right, strict=False):
        if x != y:
            break
        common += 1
    return common / max(len(left), len(right))


def candidate_parents(
    child: Peer,
    failures: FailureMemory,
    *,
    now: float,
    reader_timeout: float,
    reader_children: int,
) -> list[Peer]:
    return [
        peer
        for peer in child.task.peers.values()
        if peer is not child
        and not failures.is_bad_for(child.peer_id, peer.peer_id, now)
        and not peer.host.overloaded
        and _useful(child, peer, now - reader_timeout)
        and not _reader_full(peer, child, reader_children)
    ]


def _useful(child: Peer, parent: Peer, fresh_after: float) -> bool:
    if parent.pieces.has_any_missing_from(child.pieces):
        return True
    return is_active_reader(parent, fresh_after)


def _reader_full(parent: Peer, child: Peer, reader_children: int) -> bool:
    """A running origin reader with its share of children (``child`` keeps its place)."""
    if not (parent.is_running and parent.is_origin_reader) or child.peer_id in parent.children:
        return False
    return len(parent.children) >= reader_children


def is_active_reader(peer: Peer, fresh_after: float) -> bool:
    """An origin reader still downloading that made progress after ``fresh_after``."""
    return peer.is_running and peer.is_origin_reader and peer.updated_at >= fresh_after


def select_parents(
    child: Peer,
    evaluator: Evaluator,
    failures: FailureMemory,
    *,
    max_parents: int,
    now: float,
    reader_timeout: float,
    reader_children: int,
    rng: random.Random,
) -> list[Peer]:
    if not child.is_running or child.pieces.is_complete:
        return []
    candidates = candidate_parents(
        child, failures, now=now, reader_timeout=reader_timeout, reader_children=reader_children
    )
    ranked = _rank(child, candidates, evaluator, now, rng)
    return ranked[:max_parents]


def _rank(
    child: Peer, candidates: Iterable[Peer], evaluator: Evaluator, now: float, rng: random.Random
) -> list[Peer]:
    scored = [(evaluator.score(child, peer, now), rng.random(), peer) for peer in candidates]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [peer for _, _, peer in scored]
