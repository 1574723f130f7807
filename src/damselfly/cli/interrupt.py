"""Run a command's coroutine so that Ctrl-C stops it, even where a library swallows a
cancellation.

``asyncio.run`` answers the first SIGINT by cancelling the main task once; if something on the
way down consumes that ``CancelledError`` (a race in a library's cancellation handling), the
download simply goes on, and the command exits 0 at the end of a file that may take an hour.
Seen once in about seven full test runs (`tests/e2e/test_dfget_cli.py`, Ctrl-C mid-download:
exit 0 with the whole file); where it is swallowed was not found. Here SIGINT cancels the
main task, and again every ``REPEAT_SECONDS`` until it ends; a task that ends cancelled after
SIGINT raises ``KeyboardInterrupt``, which the command reports as an interruption.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
REPEAT_SECONDS = 0.5


def run_interruptibly(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` with the SIGINT handling above."""
    return asyncio.run(_interruptible(main))


async def _interruptible(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    repeats: list[asyncio.TimerHandle] = []
    interrupted = False

    def cancel_until_done() -> None:
        nonlocal interrupted
        interrupted = True
        if not task.done():
            task.cancel()
            repeats.append(loop.call_later(REPEAT_SECONDS, cancel_until_done))

    try:
        loop.add_signal_handler(signal.SIGINT, cancel_until_done)
    except (RuntimeError, ValueError):  # not the main thread: asyncio.run's own handling
        return await main
    try:
        return await main
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        for handle in repeats:
            handle.cancel()
