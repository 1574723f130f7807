"""BackgroundTasks: what its owner starts ends with it, and errors are kept whole."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from damselfly.core.background import BackgroundTasks
from damselfly.core.errors import StorageError


async def test_aclose_cancels_and_awaits_what_still_runs() -> None:
    stopped: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    async with BackgroundTasks() as background:
        tasks = [background.start_soon(forever(n)) for n in ("a", "b")]
        await asyncio.sleep(0)
    assert sorted(stopped) == ["a", "b"]
    assert all(t.cancelled() for t in tasks)


async def test_finished_tasks_keep_their_results() -> None:
    async def answer() -> int:
        return 42

    async with BackgroundTasks() as background:
        task = background.start_soon(answer())
        assert await task == 42


async def owner_block(work: Coroutine[Any, Any, None], error: Exception | None) -> None:
    """An owner's lifetime: one background task, then the block fails or waits forever."""
    async with BackgroundTasks() as background:
        background.start_soon(work)
        if error is not None:
            raise error
        await asyncio.Event().wait()


async def test_an_error_in_the_block_is_not_wrapped() -> None:
    with pytest.raises(StorageError, match="disk"):
        await owner_block(asyncio.Event().wait(), StorageError("disk"))


async def test_a_failing_task_ends_the_owner_and_aclose_raises_it() -> None:
    async def fail() -> None:
        raise StorageError("broken")

    with pytest.raises(ExceptionGroup) as caught:
        await owner_block(fail(), None)  # the wait is cancelled by the failure
    assert [str(e) for e in caught.value.exceptions] == ["broken"]


async def test_nothing_starts_after_aclose() -> None:
    background = BackgroundTasks()
    await background.start()
    await background.aclose()
    await background.aclose()  # idempotent
    assert background.closed
    work = asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        background.start_soon(work)
