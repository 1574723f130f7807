"""``deadline``: a whole download's time limit (``--timeout``), as our own error.

Its own module so that dfget can bound a download it hands to the daemon without importing
the download engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from damselfly.core.errors import DamselflyError, DownloadTimeoutError


@contextlib.asynccontextmanager
async def deadline(seconds: float | None, what: str) -> AsyncIterator[None]:
    """``asyncio.timeout`` that raises ``DownloadTimeoutError`` naming ``what``."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        if isinstance(exc, DamselflyError):
            raise
        raise DownloadTimeoutError(f"{what}: timed out after {seconds:g} s") from exc
