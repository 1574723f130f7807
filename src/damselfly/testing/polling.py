"""``wait_until``: the one polling helper of the tests.

Polling, because what the tests wait for is another component's state (a counter, a
scheduler's view, a process's metrics) that offers no event to await.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_INTERVAL = 0.001  # seconds between checks; pass more for checks that do I/O


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    within: float | None = 3.0,
    interval: float = POLL_INTERVAL,
) -> None:
    """Poll ``check`` (sync or async) until it is true; ``TimeoutError`` after ``within``
    seconds (``None``: no deadline of its own, the caller sets one)."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)
