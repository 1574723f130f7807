"""The in-memory view of an open task's pieces (``storage/piece_index.py``) against the
metadata store it mirrors: equal after every change, by any handle, after a restart, after
another process's writes (a second ``Store`` on the same root) and after delivery drops a bad
piece; and no scan of the store per question once the task is open."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.sqlite_metadata import SqliteMetadataStore
from damselfly.storage.store import Store, TaskStorage
from damselfly.storage.verification import CorruptContentError

TASK_ID = "e5" * 32
PIECE = 64 * 1024
COUNT = 6
DATA = os.urandom(COUNT * PIECE - 100)


def chunk(number: int) -> bytes:
    return DATA[number * PIECE : (number + 1) * PIECE]


def open_task(store: Store) -> TaskStorage:
    return store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE)


def assert_view_is_the_store(task: TaskStorage, store: Store) -> None:
    recorded = {piece.number: piece for piece in store.recorded_pieces(TASK_ID)}
    assert task.finished_pieces() == frozenset(recorded)
    assert task.is_complete == (len(recorded) == COUNT)
    for number in range(COUNT):
        assert task.piece_meta(number) == recorded.get(number)


class CountingMetadata(SqliteMetadataStore):
    """The real SQLite store, counting the calls that read rows."""

    scans = 0
    lookups = 0

    def pieces(self, task_id: str) -> list[PieceMeta]:
        self.scans += 1
        return super().pieces(task_id)

    def get_piece(self, task_id: str, number: int) -> PieceMeta | None:
        self.lookups += 1
        return super().get_piece(task_id, number)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as store:
        yield store


def test_every_handle_of_a_task_sees_every_change_at_once(store: Store) -> None:
    with open_task(store) as engine, open_task(store) as server:
        for number in (0, 3, 5):
            engine.write_piece(number, chunk(number))
            assert_view_is_the_store(server, store)
        server.drop_piece(3)
        assert_view_is_the_store(engine, store)
        assert 3 not in engine.finished_pieces()
        engine.release_space()
        assert_view_is_the_store(server, store)
        assert server.finished_pieces() == frozenset()


def test_questions_on_an_open_task_never_scan_the_store(tmp_path: Path) -> None:
    metadata = CountingMetadata(tmp_path / "metadata.db")
    with Store(tmp_path / "store", metadata=metadata) as store, open_task(store) as task:
        for number in range(COUNT - 1):
            task.write_piece(number, chunk(number))
        scans, lookups = metadata.scans, metadata.lookups
        for _ in range(100):  # as a watch waking once per stored piece would ask
            assert task.finished_pieces() == frozenset(range(COUNT - 1))
            assert not task.is_complete
            assert task.piece_meta(0) is not None
            assert task.has_piece(1)
        assert (metadata.scans, metadata.lookups) == (scans, lookups)
        task.refresh()
        assert metadata.scans == scans + 1
    metadata.close()


def test_the_view_after_a_restart_is_the_store(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store, open_task(store) as task:
        for number in range(COUNT):
            task.write_piece(number, chunk(number))
        path = task.content_path
    with open(path, "r+b") as content:  # piece 2 rots while nothing runs
        content.seek(2 * PIECE + 7)
        content.write(b"\x00" if chunk(2)[7] else b"\x01")
    with Store(tmp_path / "store") as store, open_task(store) as task:
        assert_view_is_the_store(task, store)
        assert task.finished_pieces() == frozenset(range(COUNT)) - {2}


def test_another_process_pieces_reach_the_view(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store, open_task(store) as task:
        task.write_piece(0, chunk(0))
        with Store(tmp_path / "store") as other, open_task(other) as theirs:
            for number in (1, 4):
                theirs.write_piece(number, chunk(number))
            theirs.drop_piece(0)
        assert task.piece_meta(4) is not None  # looked up by number: asked of the store
        task.refresh()
        assert_view_is_the_store(task, store)
        assert task.finished_pieces() == frozenset({1, 4})


def test_catching_up_scans_only_after_another_process_committed(tmp_path: Path) -> None:
    metadata = CountingMetadata(tmp_path / "metadata.db")
    with Store(tmp_path / "store", metadata=metadata) as store, open_task(store) as task:
        scans = metadata.scans
        for number in (0, 2):
            task.write_piece(number, chunk(number))
            for _ in range(10):  # a watch's polls while only this process writes
                task.catch_up()
        assert metadata.scans == scans
        other_metadata = SqliteMetadataStore(tmp_path / "metadata.db")
        with Store(tmp_path / "store", metadata=other_metadata) as other:
            with open_task(other) as theirs:
                theirs.write_piece(4, chunk(4))
            task.catch_up()
            assert metadata.scans == scans + 1
            assert task.finished_pieces() == frozenset({0, 2, 4})
            assert_view_is_the_store(task, store)  # (its own scan of the store)
            scans = metadata.scans
            task.catch_up()
            assert metadata.scans == scans
        other_metadata.close()
    metadata.close()


class RacingMetadata(SqliteMetadataStore):
    """The real SQLite store whose next scan returns rows read before ``during`` ran."""

    during: Callable[[], None] | None = None

    def pieces(self, task_id: str) -> list[PieceMeta]:
        rows = super().pieces(task_id)
        during, self.during = self.during, None
        if during is not None:
            during()
        return rows


def test_a_piece_recorded_during_a_reload_is_back_at_the_next_catch_up(tmp_path: Path) -> None:
    metadata = RacingMetadata(tmp_path / "metadata.db")
    with Store(tmp_path / "store", metadata=metadata) as store, open_task(store) as task:
        task.write_piece(0, chunk(0))
        metadata.during = lambda: task.write_piece(1, chunk(1))  # lands between scan and swap
        task.refresh()
        task.catch_up()  # no other process wrote, but the last scan may have missed ours
        assert task.finished_pieces() == frozenset({0, 1})
        assert_view_is_the_store(task, store)
    metadata.close()


def test_a_piece_delivery_drops_leaves_every_open_view(tmp_path: Path, store: Store) -> None:
    with open_task(store) as task:
        for number in range(COUNT):
            task.write_piece(number, chunk(number))
        task.mark_succeeded()
        with open(task.content_path, "r+b") as content:
            content.seek(PIECE + 1)
            content.write(b"\x00" if chunk(1)[1] else b"\x01")
        with pytest.raises(CorruptContentError):
            store.deliver(TASK_ID, tmp_path / "out.bin")
        assert_view_is_the_store(task, store)
        assert 1 not in task.finished_pieces()


async def test_a_watch_sees_pieces_another_process_records(tmp_path: Path, store: Store) -> None:
    with open_task(store) as task:
        task.write_piece(0, chunk(0))
        async with (
            UploadServer(store, host="127.0.0.1", port=0, watch_poll_interval=0.02) as server,
            aiohttp.ClientSession() as http,
        ):
            url = f"{server.base_url}/v1/tasks/{TASK_ID}/bitmap?watch=1"
            async with http.get(url) as response, asyncio.timeout(10):
                await response.content.readline()  # the snapshot
                with Store(tmp_path / "store") as other, open_task(other) as theirs:
                    for number in range(1, COUNT):
                        theirs.write_piece(number, chunk(number))
                lines = [json.loads(line) for line in (await response.read()).splitlines()]
    assert sorted(line["piece"] for line in lines if "piece" in line) == list(range(1, COUNT))
    assert lines[-1] == {"complete": True}
