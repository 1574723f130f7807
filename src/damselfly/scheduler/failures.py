"""Memory of parents reported bad, with decay.

Two views of the same reports (``ReportPeer.bad_parents``):

- per child: a parent a child reported bad is never proposed to that child again for
  ``bad_parent_ttl`` seconds (a hard filter: the child already knows it does not work for it);
- per parent: every report adds 1 to the parent's failure score, which halves every
  ``half_life`` seconds; the evaluator subtracts a penalty that grows with the score, so a
  parent that fails for many children sinks for everyone, and recovers when it stops failing.

Pure state; the caller passes ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Score:
    value: float
    at: float


class FailureMemory:
    def __init__(self, *, bad_parent_ttl: float, half_life: float) -> None:
        self._bad_parent_ttl = bad_parent_ttl
        self._half_life = half_life
        self._bad_for_child: dict[tuple[str, str], float] = {}
        self._scores: dict[str, _Score] = {}

    def parent_failed(self, child_id: str, parent_id: str, now: float) -> None:
        self._bad_for_child[(child_id, parent_id)] = now + self._bad_parent_ttl
        self._scores[parent_id] = _Score(self.failure_score(parent_id, now) + 1.0, now)

    def is_bad_for(self, child_id: str, parent_id: str, now: float) -> bool:
        until = self._bad_for_child.get((child_id, parent_id))
        return until is not None and now < until

    def failure_score(self, parent_id: str, now: float) -> float:
        """Decayed number of failures reported against ``parent_id``."""
        score = self._scores.get(parent_id)
        if score is None:
            return 0.0
        return score.value * math.pow(0.5, max(0.0, now - score.at) / self._half_life)

    def penalty(self, parent_id: str, now: float) -> float:
        """0 for a clean parent, 0.5 after one recent failure, towards 1 with more."""
        return 1.0 - math.pow(0.5, self.failure_score(parent_id, now))

    def peer_gone(self, peer_id: str) -> None:
        self._scores.pop(peer_id, None)
        for key in [k for k in self._bad_for_child if peer_id in k]:
            del self._bad_for_child[key]

    def forget_expired(self, now: float) -> None:
        """Drop entries that no longer matter (called from the periodic expiry)."""
        for key in [k for k, until in self._bad_for_child.items() if until <= now]:
            del self._bad_for_child[key]
        for parent_id in [p for p in self._scores if self.failure_score(p, now) < 0.01]:
            del self._scores[parent_id]

    def __len__(self) -> int:
        return len(self._bad_for_child) + len(self._scores)
