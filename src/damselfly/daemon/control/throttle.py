"""Live bandwidth limits: a token bucket whose rate can change while transfers run, and the
origin reads of the daemon throttled through it.

``LiveBucket.take(n)`` waits until ``n`` bytes may pass; ``set_rate(None)`` lifts the limit
(waiters already sleeping finish their wait). The bucket's burst is small (1/16 s of the
rate, at least 16 KiB) so a transfer of a few seconds stays close to the limit.

``ThrottledRegistry`` hands out each backend wrapped so that every body byte read from an
origin (``Backend.get``, or ``open_body``: ``backends/bodies.py``) is charged to the
back-to-source bucket: that is the one place all origin bytes of a daemon or seed pass,
whatever the scheme (listings and stats are not charged). Registries are made per request,
the bucket is shared by all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from damselfly.backends.base import Backend, Entry, ObjectStat, RequestOptions
from damselfly.backends.bodies import Body, open_body
from damselfly.backends.registry import (
    BackendRegistry,
    BackendSettings,
    WrappingRegistry,
    default_registry,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl
from damselfly.daemon.servers.upload_limits import TokenBucket

MIN_BURST_BYTES = 16 * 1024
BURST_FRACTION = 16  # the burst is 1/16 of a second of the rate


class LiveBucket:
    """A bytes-per-second limit that can be changed or lifted at any time."""

    def __init__(self, rate_bytes_per_second: float | None = None) -> None:
        self._bucket: TokenBucket | None = None
        self.set_rate(rate_bytes_per_second)

    @property
    def rate(self) -> float | None:
        return None if self._bucket is None else self._bucket.rate

    def set_rate(self, rate_bytes_per_second: float | None) -> None:
        if rate_bytes_per_second == self.rate:
            return
        if rate_bytes_per_second is None:
            self._bucket = None
            return
        burst = max(MIN_BURST_BYTES, int(rate_bytes_per_second / BURST_FRACTION))
        self._bucket = TokenBucket(rate_bytes_per_second, burst_bytes=burst)

    async def take(self, nbytes: int) -> None:
        bucket = self._bucket
        if bucket is None:
            return
        delay = bucket.reserve(nbytes)
        if delay > 0:
            await asyncio.sleep(delay)


class ThrottledBackend:
    """A backend whose body bytes are charged to ``bucket`` as they arrive."""

    def __init__(self, backend: Backend, bucket: LiveBucket) -> None:
        self._backend = backend
        self._bucket = bucket

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        return await self._backend.stat(url, options)

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        stream = self._backend.get(url, byte_range, options)
        try:
            async for chunk in stream:
                await self._bucket.take(len(chunk))
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    @contextlib.asynccontextmanager
    async def open_body(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[Body]:
        async with open_body(self._backend, url, byte_range, options) as body:
            yield ThrottledBody(body, self._bucket)

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return await self._backend.exists(url, options)

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        return await self._backend.list(url, options)

    async def aclose(self) -> None:
        await self._backend.aclose()

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)  # scheme-specific extras (listings, memo, ...)


class ThrottledBody:
    """A ``Body`` whose bytes are charged to ``bucket``; under a limit it is read in slices
    of the bucket's burst, so the bytes flow at the rate rather than in bursts of a buffer."""

    def __init__(self, body: Body, bucket: LiveBucket) -> None:
        self._body = body
        self._bucket = bucket

    async def read_into(self, target: memoryview) -> int:
        filled = 0
        while filled < len(target):
            rate = self._bucket.rate
            step = len(target) if rate is None else max(MIN_BURST_BYTES, int(rate / BURST_FRACTION))
            wanted = min(step, len(target) - filled)
            count = await self._body.read_into(target[filled : filled + wanted])
            await self._bucket.take(count)
            filled += count
            if count < wanted:
                break
        return filled


class ThrottledRegistry(WrappingRegistry):
    """A registry whose backends read origins through the shared bucket."""

    def __init__(self, inner: BackendRegistry, bucket: LiveBucket) -> None:
        super().__init__(inner, lambda _url, backend: ThrottledBackend(backend, bucket))


def throttled_factory(
    bucket: LiveBucket,
    inner: Callable[[BackendSettings], BackendRegistry] = default_registry,
) -> Callable[[BackendSettings], BackendRegistry]:
    """A ``StoreRunner`` registry factory charging origin bytes to ``bucket``."""
    return lambda settings: ThrottledRegistry(inner(settings), bucket)
