"""Running a download from synchronous code: an event loop of its own, a piece store and the
backends for one call, closed afterwards.

Called where a loop is already running (a notebook, an async server), the coroutine runs in a
worker thread and the caller blocks until it is done, as huggingface_hub's functions block.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from damselfly.backends.registry import BackendSettings, default_registry
from damselfly.config.paths import store_dir
from damselfly.download.events import DownloadObserver, NullObserver
from damselfly.download.jobs import DownloadContext
from damselfly.storage.store import Store

T = TypeVar("T")


@contextlib.asynccontextmanager
async def download_context(
    storage_dir: str | Path | None, observer: DownloadObserver | None = None
) -> AsyncIterator[DownloadContext]:
    store = Store(store_dir(storage_dir, os.environ))
    registry = default_registry(BackendSettings())
    try:
        yield DownloadContext(store=store, registry=registry, observer=observer or NullObserver())
    finally:
        await registry.aclose()
        store.close()


def run_download(
    storage_dir: str | Path | None,
    body: Callable[[DownloadContext], Awaitable[T]],
    observer: DownloadObserver | None = None,
) -> T:
    """``body`` with a fresh context, to completion, from synchronous code."""

    async def main() -> T:
        async with download_context(storage_dir, observer) as ctx:
            return await body(ctx)

    return run_sync(main)


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(make))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="damselfly") as pool:
        return pool.submit(asyncio.run, _awaited(make)).result()


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
