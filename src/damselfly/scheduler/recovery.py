"""Replacing a lost origin reader, sans I/O.

A task's origin reader (a seed with a job, or a peer sent back to source) can die mid-task.
Its children still hold the pieces it served them; what nobody holds must come from the origin
once more, and only once. The rules:

1. *Lost*: a child reports the reader ``UNREACHABLE`` (its piece port refuses connections),
   and, for a seed, the seed's job stream is closed too (a seed whose stream is open is alive:
   one child's network trouble must not make a second reader). The reader's peer is dropped
   at once, not after ``host_ttl``: its digests stay, its pieces are no longer offered.
2. *Successor*: the next time any peer of the task asks for a decision, if the task had a
   reader, none is left, no peer holds the whole file and the scheduler is past its
   ``restart_grace``, the running peer holding the most pieces (ties: the lowest peer id)
   becomes the origin reader. It is told ``BACK_TO_SOURCE`` the next time it asks (within
   about a second: a peer with few parents asks every second); everyone else keeps being
   served by parents, the successor among them.
3. *One at a time*: a successor is a reader as soon as it is chosen, so rule 2 does not fire
   again until it is lost in turn.
"""

from __future__ import annotations

from collections.abc import Iterable

from damselfly.protocol.messages import BadParent, BadParentReason
from damselfly.scheduler.resources import Peer, PeerState, Task


def lost_readers(
    child: Peer, bad_parents: Iterable[BadParent], connected_seeds: frozenset[str]
) -> list[Peer]:
    """The task's running origin readers among ``bad_parents`` that count as lost (rule 1)."""
    lost = []
    for bad in bad_parents:
        parent = child.task.peers.get(bad.peer_id)
        if parent is None or not parent.is_origin_reader or not parent.is_running:
            continue
        if bad.reason is not BadParentReason.UNREACHABLE:
            continue
        if parent.host.is_seed and parent.host.host_id in connected_seeds:
            continue
        lost.append(parent)
    return lost


def successor(task: Task) -> Peer | None:
    """The peer to read the rest of ``task`` from the origin, if its reader is lost (rule 2)."""
    if not task.digests.had_reader or task.digests.readers:
        return None
    peers = task.peers.values()
    if any(peer.state is PeerState.FINISHED for peer in peers):
        return None  # a whole copy exists: parents can serve everything
    running = [peer for peer in peers if peer.is_running and peer.pieces.count]
    if not running:
        return None  # nobody holds anything: the usual rules (seed job, first asker)
    return min(running, key=lambda peer: (-peer.pieces.count, peer.peer_id))
