"""Which scheduler a call goes to, and what an outcome changes: the scheduler link's state, sans-IO.

The gRPC layer (``channels.py``) asks where to send and reports what happened; this class
does no I/O and reads time only through the injected ``clock``. Rules:

1. Every daemon with the same address list picks the same scheduler for a task: a task's
   calls go to the first *live* address of the task's rendezvous order
   (``protocol/rendezvous.py``, key = task id). Duplicate addresses count once.
2. ``call_failed`` (the scheduler is down, timed out or broken: any status another scheduler
   might answer differently) marks the address down for ``retry_down_after`` seconds: down
   addresses move to the end of every order, in their rendezvous order, so a call still has
   somewhere to go when all are down.
3. ``call_answered`` makes the address live again at once.
4. The *generation* of an address counts how often its connection became ready, at least
   (never fewer): the announcer re-announces a scheduler's tasks when it changes, which is how
   a restart between two announcements is noticed. The channel watcher reports each state it
   sees (``connection_changed``); an answer over a connection not yet seen ready (the call
   connected before the watcher noticed) counts as a new connection too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from damselfly.core.errors import ConfigError
from damselfly.protocol.rendezvous import rendezvous_order

Clock = Callable[[], float]


@dataclass
class _AddressState:
    down_until: float = 0.0
    generation: int = 0  # times the connection became ready (at least; never fewer)
    ready: bool = False  # the connection was ready when last seen


class SchedulerFailover:
    def __init__(
        self,
        addresses: Sequence[str],
        *,
        retry_down_after: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not addresses:
            raise ConfigError("no scheduler address configured")
        self._addresses = tuple(dict.fromkeys(addresses))
        self._states = {a: _AddressState() for a in self._addresses}
        self.retry_down_after = retry_down_after
        self._clock = clock

    # -- where to send -------------------------------------------------------------------------

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._addresses

    def order_for(self, key: str) -> list[str]:
        """``key``'s rendezvous order, addresses marked down recently moved to the end."""
        order = rendezvous_order(key, self._addresses)
        return [a for a in order if not self.is_down(a)] + [a for a in order if self.is_down(a)]

    def first_live(self, key: str, skip: Collection[str] = ()) -> str | None:
        """The first address of ``key``'s order not in ``skip`` (None: every one skipped)."""
        return next((a for a in self.order_for(key) if a not in skip), None)

    def is_down(self, address: str) -> bool:
        return self._states[address].down_until > self._clock()

    def generation(self, address: str) -> int:
        """How many times the connection to ``address`` became ready (changes on reconnect)."""
        return self._states[address].generation

    # -- what happened -------------------------------------------------------------------------

    def call_failed(self, address: str) -> None:
        state = self._states[address]
        state.down_until = self._clock() + self.retry_down_after
        state.ready = False  # the next answer comes over a new connection

    def call_answered(self, address: str) -> None:
        state = self._states[address]
        state.down_until = 0.0
        if not state.ready:  # this call connected before the watcher noticed
            state.generation += 1
            state.ready = True

    def connection_changed(self, address: str, *, was_ready: bool, ready: bool) -> None:
        """The channel went from the state last seen (``was_ready``) to a new one (``ready``).
        Ready after ready means it reconnected in between."""
        state = self._states[address]
        if ready and (was_ready or not state.ready):
            state.generation += 1
        state.ready = ready
