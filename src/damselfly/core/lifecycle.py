"""``AsyncResource``: something started and closed, usable with ``async with``.

Servers, clients and task owners all open the same way: ``start()`` when their lifetime
begins, ``aclose()`` (idempotent) when it ends, whatever ended it. Subclasses write those two;
this base gives them the ``async with`` form once, instead of a copy in every class.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    async def start(self) -> None:
        """Begin the resource's lifetime (bind, connect, start tasks)."""

    async def aclose(self) -> None:
        """End it; safe to call more than once."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
