"""Upload limits: how many pieces go out at once, and how fast all of them go together.

Both are plain synchronous state with no I/O, so they are tested with a fake clock:

- ``UploadSlots``: a counter of piece responses in progress. The server asks ``try_acquire``
  before it does any work for a piece request and answers 429 when it returns False; it never
  queues, because a busy parent should send the child elsewhere at once.
- ``TokenBucket``: one bucket shared by every upload. Before each chunk the sender *reserves*
  the chunk's bytes and gets back how long to wait before sending it. Tokens accrue at
  ``rate_bytes_per_second`` up to ``burst_bytes``; a reservation may take the level below zero
  (debt) and the caller waits until the debt is paid. Waits are handed out in reservation
  order, so the long-run rate never exceeds the limit however many uploads share it, and a
  chunk of any size is allowed (it just waits longer).

``paced`` is the sender's side: reserve, wait, and give the bytes back if the wait is
cancelled (the child went away, or stopped a twin request), so a stopped upload does not make
the next one wait for bytes that were never sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Clock = Callable[[], float]
MIN_BURST_BYTES = 64 * 1024


class UploadSlots:
    """At most ``limit`` uploads at once."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"upload slots must be > 0, got {limit}")
        self.limit = limit
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def try_acquire(self) -> bool:
        if self._in_use >= self.limit:
            return False
        self._in_use += 1
        return True

    def release(self) -> None:
        if self._in_use <= 0:
            raise RuntimeError("upload slot released more often than acquired")
        self._in_use -= 1


class TokenBucket:
    """A shared bytes-per-second limit; see the module docstring."""

    def __init__(
        self,
        rate_bytes_per_second: float,
        *,
        burst_bytes: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate_bytes_per_second <= 0:
            raise ValueError(f"rate must be > 0 bytes/s, got {rate_bytes_per_second}")
        self.rate = float(rate_bytes_per_second)
        default_burst = max(MIN_BURST_BYTES, int(self.rate / 4))
        self.burst = float(default_burst if burst_bytes is None else burst_bytes)
        if self.burst <= 0:
            raise ValueError(f"burst must be > 0 bytes, got {burst_bytes}")
        self._clock = clock
        self._level = self.burst
        self._updated = clock()

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` now; return the seconds to wait before sending them."""
        if nbytes < 0:
            raise ValueError(f"cannot reserve {nbytes} bytes")
        self._refill()
        self._level -= nbytes
        return max(0.0, -self._level / self.rate)

    def refund(self, nbytes: int) -> None:
        """Give back ``nbytes`` reserved and never sent (up to the burst)."""
        self._refill()
        self._level = min(self.burst, self._level + nbytes)

    @property
    def level(self) -> float:
        """Tokens available now (negative: debt still to be waited out)."""
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._level = min(self.burst, self._level + elapsed * self.rate)


async def paced(bucket: TokenBucket, nbytes: int) -> None:
    """Wait until ``nbytes`` may be sent; cancelled while waiting, they go back to ``bucket``."""
    delay = bucket.reserve(nbytes)
    if delay <= 0:
        return
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        bucket.refund(nbytes)
        raise
