"""A part's write in a worker thread outlives nothing: when the receiving task is cancelled,
the cancellation reaches it only after the thread's write ended (else an unverified part
could land after its stream ended, past the twin and record checks)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from damselfly.daemon.engine.piece_receiver import finished_even_if_cancelled


async def test_a_cancelled_write_is_waited_for_before_the_cancellation_propagates():
    done = threading.Event()

    def slow_write() -> None:
        time.sleep(0.3)
        done.set()

    task = asyncio.ensure_future(finished_even_if_cancelled(asyncio.to_thread(slow_write)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()  # plain ``await asyncio.to_thread(...)`` ends here with it unset


async def test_a_write_that_fails_still_raises_its_error():
    def failing_write() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        await finished_even_if_cancelled(asyncio.to_thread(failing_write))
