"""``TtlMemo``: values that expire, each loaded by one caller at a time.

``HfBackend`` keeps two: revision -> commit (a minute), and file -> where its bytes are (the
CDN URL until its signature expires). When eight pieces of one file start at once, the first
caller sends the one ``/resolve`` request and the other seven wait for its answer instead of
sending their own: that is what keeps hub traffic at one ``/resolve`` per file.

A failed load stores nothing (the next caller tries again). Entries past their expiry are
never returned; the table is pruned when it reaches ``max_entries``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Clock = Callable[[], float]


class TtlMemo(Generic[K, V]):
    def __init__(self, clock: Clock, *, max_entries: int = 4096) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._values: dict[K, tuple[V, float]] = {}
        self._locks: dict[K, asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K) -> V | None:
        found = self._values.get(key)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def forget(self, key: K, value: V | None = None) -> None:
        """Drop ``key``; with ``value``, only if it still maps to that very value (so one of
        many callers who saw the same stale value drops it, and the rest keep the fresh one)."""
        found = self._values.get(key)
        if found is not None and (value is None or found[0] is value):
            del self._values[key]

    async def load(self, key: K, loader: Callable[[], Awaitable[tuple[V, float]]]) -> V:
        """The live value for ``key``, else ``await loader()`` -> ``(value, expires_at)``."""
        hit = self.get(key)
        if hit is not None:
            return hit
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                hit = self.get(key)
                if hit is not None:
                    return hit
                value, expires_at = await loader()
                self._put(key, value, expires_at)
                return value
        finally:
            if not lock.locked():
                self._locks.pop(key, None)

    def _put(self, key: K, value: V, expires_at: float) -> None:
        if len(self._values) >= self._max_entries:
            self._prune()
        self._values[key] = (value, expires_at)

    def _prune(self) -> None:
        now = self._clock()
        self._values = {k: v for k, v in self._values.items() if v[1] > now}
        if len(self._values) >= self._max_entries:  # all live: drop the oldest half
            kept = list(self._values.items())[len(self._values) // 2 :]
            self._values = dict(kept)
