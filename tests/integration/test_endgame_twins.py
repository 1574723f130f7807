"""Endgame twins: a piece asked of two parents that one of them delivers is no longer sent by
the other (issue 15, "the swarm's tail": a twin left to run kept a busy parent's uplink on a
whole piece nobody needed while the last nodes waited on that same parent).

Real pieces: three real ``UploadServer``s on loopback; the child is the daemon's
``PeerFiller`` with a real ``PieceClient``; the scheduler is ``FakeSchedulerClient``. The task
has two pieces. ``fast`` and ``slow`` hold piece 0, ``slow`` behind an upload limit of one
piece per ``SLOW_SECONDS``; ``late`` holds piece 1 behind a longer one. The child asks ``late``
for piece 1 and one of the others for piece 0, then, every piece being in flight (the
endgame), the other one for piece 0 too. ``fast`` delivers it at once; ``slow`` must not go
on sending it while the download waits for ``late``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.backends.registry import BackendRegistry
from damselfly.core.urls import parse_url
from damselfly.daemon.engine.peer_filler import PeerFiller
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.download.events import CountingObserver
from damselfly.download.file_download import download_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.protocol import messages as msg
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.storage.store import Store
from damselfly.testing.fake_scheduler import FakeSchedulerClient
from damselfly.testing.memory_backend import MemoryBackend
from damselfly.transport.piece_client import PieceClient

URL = "https://origin.test/org/model/weights.bin"
PIECE = 1024 * 1024
DATA = os.urandom(2 * PIECE)
SLOW_SECONDS = 2.0  # the slow parent's limit: one piece in this time
LATE_SECONDS = 3.0  # piece 1 comes from a parent slower still: the download outlasts ``slow``


def job(output: Path) -> FileJob:
    return FileJob(url=parse_url(URL), output=output, piece_length=PIECE)


def context(store: Store, registry: BackendRegistry, filler: object = None) -> DownloadContext:
    extra = {} if filler is None else {"filler": filler}
    return DownloadContext(store=store, registry=registry, observer=CountingObserver(), **extra)


def parent_info(name: str, server: UploadServer, held: PieceBitmap) -> msg.ParentInfo:
    return msg.ParentInfo(
        peer_id=f"{name}-peer",
        host_id=f"{name}-host",
        ip="127.0.0.1",
        upload_port=server.port,
        type=msg.HostType.NORMAL,
        pieces=held,
        free_upload_slots=4,
        free_upload_rate=0,
    )


@pytest.fixture
async def parents(tmp_path: Path) -> AsyncIterator[tuple[FakeSchedulerClient, UploadServer]]:
    """(the scheduler naming the three parents, the slow parent's server)."""
    registry = BackendRegistry({"https": lambda: MemoryBackend.with_objects({URL: DATA})})
    scheduler = FakeSchedulerClient(decision=msg.Decision.FROM_PARENTS)
    held = {"fast": 0, "slow": 0, "late": 1}
    limits = {"fast": None, "slow": PIECE / SLOW_SECONDS, "late": PIECE / LATE_SECONDS}
    async with contextlib.AsyncExitStack() as stack:
        infos, servers = [], {}
        for name, number in held.items():
            store = stack.enter_context(Store(tmp_path / name))
            result = await download_file(job(tmp_path / f"{name}-out"), context(store, registry))
            for piece in store.recorded_pieces(result.task_id):
                scheduler.digests[result.task_id][piece.number] = piece.digest
            task = store.open_task(result.task_id, url=URL, content_length=len(DATA),
                                   piece_length=PIECE)  # fmt: skip
            task.drop_piece(1 - number)
            servers[name] = await stack.enter_async_context(
                UploadServer(
                    store, host="127.0.0.1", port=0, rate_limit_bytes_per_second=limits[name]
                )
            )
            infos.append(parent_info(name, servers[name], PieceBitmap.of(2, [number])))
        scheduler.parents = tuple(infos)
        yield scheduler, servers["slow"]


async def test_a_piece_one_parent_delivered_is_no_longer_sent_by_its_twin(
    tmp_path: Path, parents: tuple[FakeSchedulerClient, UploadServer]
) -> None:
    scheduler, slow = parents
    registry = BackendRegistry({"https": lambda: MemoryBackend.with_objects({URL: DATA})})
    pieces = PieceClient()
    try:
        with Store(tmp_path / "child") as child_store:
            filler = PeerFiller(scheduler, "child-host", pieces)
            async with asyncio.timeout(4 * LATE_SECONDS):
                await download_file(job(tmp_path / "out"), context(child_store, registry, filler))
    finally:
        await pieces.aclose()

    assert (tmp_path / "out").read_bytes() == DATA
    assert filler.counters.peer_bytes == len(DATA)  # every piece from the parents
    sent = slow.statistics()
    assert sent.pieces_served == 0  # not sent to its end
    assert sent.bytes_uploaded < PIECE / 2  # stopped when ``fast`` delivered, not at the end
