"""One gRPC channel per scheduler, and each call's outcome fed to the failover state.

Channels: one ``grpc.aio`` channel per address, plain text or mTLS as the ``ChannelMaker``
says (``security/tls.py``: the node's current certificate, the server's certificate checked
for the scheduler role), created lazily inside the running loop and reopened when the maker's
``generation`` moves (the node's certificate was renewed: a channel keeps the credentials it
was opened with),
with reconnect backoff capped at ``retry_down_after`` so a marked-down address has reconnected
by the time it is tried again. A small task per channel (owned by this object's
``BackgroundTasks``) reports every connectivity change to ``SchedulerFailover``, which counts
the connection's *generation*.

Outcomes, per call (``failed``):

- ``INVALID_ARGUMENT`` -> ``ProtocolError`` with the server's message (another scheduler would
  say the same);
- ``FAILED_PRECONDITION`` -> ``UnknownHostError``: that scheduler does not know this host or
  peer; the caller announces again and re-registers;
- ``NOT_FOUND`` -> ``UnknownTaskError`` (``GetPieceDigests`` of a task it does not know);
- anything else (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ...: the scheduler is broken or
  gone) -> the address is marked down and the next one is tried; when all failed:
  ``SchedulerUnavailableError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from damselfly.core.background import BackgroundTasks
from damselfly.core.errors import (
    BLOCKED_DETAIL_PREFIX,
    BlockedError,
    DamselflyError,
    ProtocolError,
    SchedulerError,
)
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub
from damselfly.security.tls import ChannelMaker
from damselfly.transport.scheduler.api import (
    SchedulerUnavailableError,
    UnknownHostError,
    UnknownTaskError,
)
from damselfly.transport.scheduler.failover import SchedulerFailover

log = logging.getLogger(__name__)
T = TypeVar("T")
Stub = Any  # grpcio-tools generates untyped stubs: bind the constructor to a typed name once
_new_stub: Callable[[Any], Stub] = SchedulerStub

MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
_READY = grpc.ChannelConnectivity.READY


def final_error(exc: grpc.aio.AioRpcError) -> DamselflyError | None:
    """Our error for a status that another scheduler would answer the same way, else None."""
    code, details = exc.code(), exc.details() or exc.code().name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ProtocolError(f"scheduler refused the message: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return UnknownHostError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return UnknownTaskError(details)
    if code == grpc.StatusCode.PERMISSION_DENIED and details.startswith(BLOCKED_DETAIL_PREFIX):
        return BlockedError(details.removeprefix(BLOCKED_DETAIL_PREFIX))  # the blocklist
    return None


@dataclass
class _Channel:
    address: str
    channel: Any = None  # grpc.aio.Channel, created in the running loop
    stub: Stub = None
    generation: int = 0  # of the node's TLS material the channel was opened with


class SchedulerChannels:
    """Enter with ``async with`` (or ``start()``) before the first call; ``aclose()`` ends
    every background task, then closes the channels."""

    def __init__(self, failover: SchedulerFailover, maker: ChannelMaker | None = None) -> None:
        self.failover = failover
        self._maker = maker or ChannelMaker(None)
        self._channels = {a: _Channel(a) for a in failover.addresses}
        self._background = BackgroundTasks()

    async def start(self) -> None:
        await self._background.start()

    async def aclose(self) -> None:
        try:
            await self._background.aclose()
        finally:
            for held in self._channels.values():
                if held.channel is not None:
                    await held.channel.close()
                    held.channel = held.stub = None

    async def __aenter__(self) -> SchedulerChannels:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._background.closed

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` until it ends or this object closes (it must not raise)."""
        return self._background.start_soon(work)

    # -- calls ---------------------------------------------------------------------------------

    def stub(self, address: str) -> Stub:
        if self._background.closed:
            raise SchedulerError("scheduler client is closed")
        held = self._channels[address]
        generation = self._maker.generation
        if held.channel is not None and held.generation != generation:
            self._retire(held)  # renewed material: new connections present the new certificate
        if held.channel is None:
            held.channel = self._maker.open(address, options=self._options())
            held.stub, held.generation = _new_stub(held.channel), generation
            self.spawn(self._watch_connection(held))
        return held.stub

    def _retire(self, held: _Channel) -> None:
        """Close ``held``'s channel once its calls had time to end; the next call reopens."""
        old, held.channel, held.stub = held.channel, None, None
        log.info("reopening the channel to %s with renewed TLS material", held.address)
        self.spawn(old.close(grace=30.0))

    async def first_live(self, key: str, what: str, call: Callable[[Stub], Awaitable[T]]) -> T:
        """``call`` on ``key``'s schedulers in order until one answers."""
        failures: list[str] = []
        for address in self.failover.order_for(key):
            try:
                answer = await call(self.stub(address))
            except grpc.aio.AioRpcError as exc:
                failures.append(self.failed(address, what, exc))
                continue
            self.answered(address)
            return answer
        raise SchedulerUnavailableError(what, failures)

    async def to_every(self, what: str, call: Callable[[Stub], Awaitable[Any]]) -> list[str]:
        """``call`` on every scheduler at once; the addresses that answered (at least one)."""

        async def one(address: str) -> str | DamselflyError | None:
            try:
                await call(self.stub(address))
            except grpc.aio.AioRpcError as exc:
                final = final_error(exc)
                return final if final is not None else self.failed(address, what, exc)
            self.answered(address)
            return None

        addresses = self.failover.addresses
        outcomes = await asyncio.gather(*(one(a) for a in addresses))
        answered = [a for a, outcome in zip(addresses, outcomes, strict=True) if not outcome]
        finals = [o for o in outcomes if isinstance(o, DamselflyError)]
        if finals and not answered:
            raise finals[0]
        if not answered:
            raise SchedulerUnavailableError(what, [o for o in outcomes if isinstance(o, str)])
        return answered

    def failed(self, address: str, what: str, exc: grpc.aio.AioRpcError) -> str:
        """Raise our error for a final status; else mark ``address`` down, return a note."""
        final = final_error(exc)
        if final is not None:
            raise final from exc
        self.failover.call_failed(address)
        note = f"{address}: {exc.code().name} {(exc.details() or '')[:200]}".rstrip()
        log.debug("%s failed: %s", what, note)
        return note

    def answered(self, address: str) -> None:
        self.failover.call_answered(address)

    # -- plumbing ------------------------------------------------------------------------------

    def _options(self) -> list[tuple[str, Any]]:
        backoff_ms = max(100, int(self.failover.retry_down_after * 1000))
        return [
            ("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
            ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH),
            ("grpc.initial_reconnect_backoff_ms", min(250, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(250, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ("grpc.keepalive_time_ms", 300_000),  # the server's default minimum ping interval
            ("grpc.keepalive_timeout_ms", 20_000),
        ]

    async def _watch_connection(self, held: _Channel) -> None:
        """Report the channel's (re)connections, including those made in the background."""
        channel = held.channel
        try:
            seen = channel.get_state(try_to_connect=False)
            while True:
                await channel.wait_for_state_change(seen)
                if held.channel is not channel:
                    return  # retired after a renewal; its successor has its own watcher
                now = channel.get_state(try_to_connect=False)
                self.failover.connection_changed(
                    held.address, was_ready=seen == _READY, ready=now == _READY
                )
                seen = now
        except Exception:  # a broken watcher only loses generations; it must not end the client
            log.debug("connection watcher of %s stopped", held.address, exc_info=True)
