"""Following one parent's bitmap stream: which pieces it holds, as it gains them.

A 404 means the parent has not opened the task yet: a seed handed its job a moment ago
answers so until it has the origin's answer. The watch starts again soon
(``WATCH_RETRY_*``), not at the next parent refresh a second later: on a small file that
second was the whole download (docs/benchmarks.md, "Small files").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from damselfly.core.errors import PeerError, ProtocolError
from damselfly.daemon.engine.piece_dispatcher import PieceDispatcher
from damselfly.transport.piece_client import (
    ParentUnreachableError,
    PieceClient,
    PieceNotHeldError,
)

WATCH_RETRY_FIRST = 0.01  # seconds before watching again a parent that answered 404 ...
WATCH_RETRY_MAX = 0.25  # ... doubling up to this
WATCH_RETRY_WINDOW = 5.0  # seconds of 404s before a watcher gives up (a refresh restarts it)


async def watch_parent(
    pieces: PieceClient,
    dispatcher: PieceDispatcher,
    task_id: str,
    piece_count: int,
    peer_id: str,
    on_news: Callable[[], None],
) -> None:
    """Feed ``dispatcher`` what ``peer_id`` announces until it holds everything, is gone
    from the dispatcher, or keeps answering 404; raises ``ParentUnreachableError`` when the
    stream broke (the parent went away)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + WATCH_RETRY_WINDOW
    for delay in _backoff(WATCH_RETRY_FIRST, WATCH_RETRY_MAX):
        parent = dispatcher.parent(peer_id)
        if parent is None:
            return
        stream = pieces.watch_batches(parent.address, task_id, piece_count=piece_count)
        try:
            async with contextlib.aclosing(stream) as batches:
                async for batch in batches:
                    dispatcher.parent_has(peer_id, batch)
                    on_news()
            return
        except PieceNotHeldError:
            if loop.time() + delay > give_up:
                return  # a later parent refresh starts a new watcher
            await asyncio.sleep(delay)
        except ParentUnreachableError:
            raise
        except (PeerError, ProtocolError):
            return


def _backoff(first: float, most: float) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(most, 2 * delay)
