"""Ctrl-C stops a command even when something swallows the first cancellation
(``cli/interrupt.py``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from damselfly.cli.interrupt import run_interruptibly


async def download_that_swallows_one_cancel(seconds: float) -> str:
    """Works for ``seconds``; consumes the first cancellation, as a racy library may."""
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, once
    swallowed = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True
    return "finished"


def test_ctrl_c_stops_a_download_that_swallowed_the_first_cancel():
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_interruptibly(download_that_swallows_one_cancel(10))
    assert time.monotonic() - started < 5  # not the end of the "download"


async def finishes(value: int) -> int:
    await asyncio.sleep(0)
    return value


def test_without_ctrl_c_the_result_comes_back_and_sigint_is_restored():
    assert run_interruptibly(finishes(7)) == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


async def cancelled_by_itself() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(1)


def test_a_cancellation_without_ctrl_c_is_not_called_an_interrupt():
    with pytest.raises(asyncio.CancelledError):
        run_interruptibly(cancelled_by_itself())
