"""Readers of a task whose file an output shares (``storage/shared_content.py``): the piece
server's cached handles notice the store replaced the file, and the proxy checks a piece of a
shared file before it sends it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_linked_outputs import DATA, PIECE, TASK_ID, fill, flip, open_task

from damselfly.daemon.proxy.engine_fetcher import _checked_part
from damselfly.daemon.proxy.mesh import MeshUnavailableError
from damselfly.daemon.servers.upload_tasks import TaskCache
from damselfly.storage.store import Store


async def test_the_piece_servers_handle_is_reopened_once_the_file_is_replaced(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store:
        fill(store)
        store.deliver(TASK_ID, out, hard_link=True)
        cache = TaskCache(store, capacity=4, spawn=asyncio.create_task)
        try:
            async with cache.use(TASK_ID) as first:
                assert first is not None
                assert not first.stale()
            flip(out, PIECE + 7)  # the user edits the output
            with open_task(store):  # the store takes its own copy
                pass
            assert first.stale()
            async with cache.use(TASK_ID) as second:
                assert second is not None
                assert second is not first
                assert not second.stale()
                assert second.storage.finished_pieces() == {0, 2}
        finally:
            await cache.aclose()


def test_the_proxy_sends_a_shared_files_piece_only_as_its_digest_says(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store:
        fill(store)
        with open_task(store) as reader:
            assert not reader.shared_with_output()
            store.deliver(TASK_ID, out, hard_link=True)
            assert reader.shared_with_output()
            part = _checked_part(reader, 1, PIECE + 10, 2 * PIECE - 1)
            assert part == DATA[PIECE + 10 : 2 * PIECE]
            flip(out, PIECE + 7)  # the user edits the output while the proxy reads it
            with pytest.raises(MeshUnavailableError, match="changed on disk"):
                _checked_part(reader, 1, PIECE + 10, 2 * PIECE - 1)
