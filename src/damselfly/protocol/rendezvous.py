"""Rendezvous (highest random weight) hashing: who is responsible for a key.

Used twice with the same rule, so every node computes the same answer: the scheduler picks the
seed of a task over its connected seeds' host ids, and daemons pick the scheduler of a task
over their configured scheduler addresses (then the next in that order when one is down).
Removing a node moves only the keys that node had; adding one takes about 1/n of the keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(key: str, node: str) -> int:
    data = f"{len(node)}:{node}|{key}".encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def rendezvous_order(key: str, nodes: Iterable[str]) -> list[str]:
    """``nodes`` ordered by preference for ``key``, best first (ties broken by name)."""
    return sorted(set(nodes), key=lambda node: (-_weight(key, node), node))


def rendezvous_choice(key: str, nodes: Iterable[str]) -> str | None:
    order = rendezvous_order(key, nodes)
    return order[0] if order else None
