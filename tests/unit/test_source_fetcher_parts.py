"""``SourceFetcher``'s part pipeline (``download/source_fetcher.py``) where a run breaks off:
a piece its last part recorded is still announced, a cancellation is never swallowed, and no
worker thread is left writing after the run has ended."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.core.errors import SourceProtocolError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl, parse_url
from damselfly.download.source_fetcher import FetchPolicy, SourceFetcher, part_length
from damselfly.storage.store import Store, TaskStorage
from damselfly.testing.memory_metadata import MemoryMetadataStore

PIECE = 64 * 1024
DATA = bytes(range(256)) * (4 * PIECE // 256)
URL = parse_url("http://origin.test/f")


class BreaksAfterOnePiece:
    """An origin whose every answer breaks off after one piece's bytes."""

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        start = 0 if byte_range is None else byte_range.start
        yield DATA[start : start + PIECE]
        raise SourceProtocolError(url.redacted(), "connection closed early")


@pytest.fixture
def task(tmp_path: Path) -> Iterator[TaskStorage]:
    with (
        Store(tmp_path / "store", metadata=MemoryMetadataStore()) as store,
        store.open_task(
            "ab" * 32, url=str(URL), content_length=len(DATA), piece_length=PIECE
        ) as task,
    ):
        yield task


async def test_a_piece_recorded_before_the_run_broke_is_announced(task) -> None:
    told: list[int] = []
    fetcher = SourceFetcher(
        BreaksAfterOnePiece(),  # type: ignore[arg-type]
        URL,
        RequestOptions(),
        task,
        policy=FetchPolicy(concurrency=1, piece_attempts=1),
        on_piece=lambda meta: told.append(meta.number),
    )
    with pytest.raises(SourceProtocolError):
        await fetcher.run(supports_ranges=True)
    assert sorted(task.finished_pieces()) == told == [0]


async def test_a_cancel_while_a_broken_run_waits_for_its_part_is_not_swallowed(
    task, monkeypatch
) -> None:
    release = threading.Event()
    writing = threading.Event()
    write_part = task.write_part

    def slow_write(number, offset, chunks):  # type: ignore[no-untyped-def]
        writing.set()
        release.wait(5)
        return write_part(number, offset, chunks)

    monkeypatch.setattr(task, "write_part", slow_write)
    fetcher = SourceFetcher(
        BreaksAfterOnePiece(),  # type: ignore[arg-type]
        URL,
        RequestOptions(),
        task,
        policy=FetchPolicy(concurrency=1, piece_attempts=3, retry_delay=0.01),
        on_piece=lambda meta: None,
    )
    run = asyncio.create_task(fetcher.run(supports_ranges=True))
    await asyncio.to_thread(writing.wait, 5)  # the run broke; it waits for piece 0's part
    await asyncio.sleep(0.05)
    run.cancel()
    await asyncio.sleep(0.05)
    assert not run.done()  # the worker's part ends first
    release.set()
    with pytest.raises(asyncio.CancelledError):  # not the read error, not a retry
        await run


@pytest.mark.parametrize(
    ("concurrency", "piece", "expected"),
    [(1, 16 << 20, 4 << 20), (2, 16 << 20, 2 << 20), (3, 4 << 20, 1 << 20),
     (8, 4 << 20, 1 << 20), (2, 65_536, 65_536)],
)  # fmt: skip
def test_parts_divide_a_piece(concurrency: int, piece: int, expected: int) -> None:
    length = part_length(concurrency, piece)
    assert length == expected
    assert piece % length == 0
