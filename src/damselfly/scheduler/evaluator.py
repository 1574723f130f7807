"""Parent selection: which peers a child should download from, best first.

Two steps with different owners:

1. **Rules** (``candidate_parents``, fixed): a candidate is a peer of the same task that is not
   the child, not one of the child's descendants (so parent links never form a cycle), not
   reported bad by this child in the last ``bad_parent_ttl`` seconds, on a host that is not
   overloaded (no free upload slot, or no free bandwidth), and that either holds a piece the
   child lacks or is an active origin reader of the task (still downloading, progress within
   ``reader_timeout``: it will hold every piece; the child watches its bitmap). These are
   correctness constraints, so they are not pluggable.
2. **Scoring** (an ``Evaluator``, pluggable): a number per candidate, higher is better. The
   default (docs/p2p.md) weighs free upload capacity 0.5, pieces held 0.2, same idc 0.15,
   location prefix 0.05, host type 0.1 (a normal peer beats a seed, to spare seeds), minus a
   penalty for failures recently reported against the parent by any child.

``select_parents`` keeps the best ``max_parents``, ties broken by peer id (deterministic).
"""

from __future__ import annotations

from collections import deque
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
            - w.failure_penalty * self._failures.penalty(parent.peer_id, now)
        )


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


def descendants(child: Peer) -> set[str]:
    """Peer ids that download (directly or not) from ``child``."""
    children: dict[str, list[str]] = {}
    for peer in child.task.peers.values():
        for parent_id in peer.parents:
            children.setdefault(parent_id, []).append(peer.peer_id)
    found: set[str] = set()
    queue = deque([child.peer_id])
    while queue:
        for below in children.get(queue.popleft(), ()):
            if below not in found:
                found.add(below)
                queue.append(below)
    return found


def candidate_parents(
    child: Peer, failures: FailureMemory, *, now: float, reader_timeout: float
) -> list[Peer]:
    below = descendants(child)
    return [
        peer
        for peer in child.task.peers.values()
        if peer is not child
        and peer.peer_id not in below
        and not failures.is_bad_for(child.peer_id, peer.peer_id, now)
        and not peer.host.overloaded
        and _useful(child, peer, now - reader_timeout)
    ]


def _useful(child: Peer, parent: Peer, fresh_after: float) -> bool:
    if parent.pieces.has_any_missing_from(child.pieces):
        return True
    return is_active_reader(parent, fresh_after)


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
) -> list[Peer]:
    if not child.is_running or child.pieces.is_complete:
        return []
    candidates = candidate_parents(child, failures, now=now, reader_timeout=reader_timeout)
    ranked = _rank(child, candidates, evaluator, now)
    return ranked[:max_parents]


def _rank(child: Peer, candidates: Iterable[Peer], evaluator: Evaluator, now: float) -> list[Peer]:
    scored = [(evaluator.score(child, peer, now), peer.peer_id, peer) for peer in candidates]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [peer for _, _, peer in scored]
