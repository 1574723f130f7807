"""The P2P download's latency on a small file whose parent (a seed handed the job a moment ago)
has not opened the task yet: the child must start as soon as the parent holds it, not at the
next timer (the ~1 s cold small-file wait, docs/benchmarks.md "Small files").

Real pieces: a real ``UploadServer`` on loopback for the parent, the daemon's ``PeerFiller``
with a real ``PieceClient`` for the child; the scheduler is ``FakeSchedulerClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.backends.registry import BackendRegistry
from damselfly.core.urls import parse_url
from damselfly.daemon.engine import peer_download
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

URL = "https://origin.test/org/model/config.json"
DATA = b'{"architectures": ["Toy"], "hidden_size": 64}\n' * 24
PARENT_LATE = 0.3  # seconds after the child starts before the parent holds the task


@pytest.fixture
def registry() -> BackendRegistry:
    backend = MemoryBackend.with_objects({URL: DATA})
    return BackendRegistry({"https": lambda: backend})


@pytest.fixture
async def parent(tmp_path: Path) -> AsyncIterator[tuple[Store, UploadServer]]:
    with Store(tmp_path / "parent") as store:
        async with UploadServer(store, host="127.0.0.1", port=0) as server:
            yield store, server


def context(store: Store, registry: BackendRegistry, filler: object = None) -> DownloadContext:
    extra = {} if filler is None else {"filler": filler}
    return DownloadContext(store=store, registry=registry, observer=CountingObserver(), **extra)


async def test_a_child_starts_as_soon_as_a_late_parent_opens_the_task(
    tmp_path: Path,
    registry: BackendRegistry,
    parent: tuple[Store, UploadServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the timers that used to end the wait: far beyond the test's deadline now
    monkeypatch.setattr(peer_download, "STALL_CHECK_INTERVAL", 60.0)
    monkeypatch.setattr(peer_download, "PARENT_REFRESH_INTERVAL", 60.0)
    parent_store, server = parent
    scheduler = FakeSchedulerClient(decision=msg.Decision.WAIT_FOR_SEED)
    scheduler.parents = (
        msg.ParentInfo(
            peer_id="seed-peer",
            host_id="seed-host",
            ip="127.0.0.1",
            upload_port=server.port,
            type=msg.HostType.SEED,
            pieces=PieceBitmap.empty(1),
            free_upload_slots=4,
            free_upload_rate=0,
            origin_reader=True,
        ),
    )

    async def parent_reads_the_origin() -> float:
        await asyncio.sleep(PARENT_LATE)
        job = FileJob(url=parse_url(URL), output=tmp_path / "parent-out" / "config.json")
        result = await download_file(job, context(parent_store, registry))
        for piece in parent_store.recorded_pieces(result.task_id):
            scheduler.digests[result.task_id][piece.number] = piece.digest
        server.piece_added(result.task_id, 0)
        return asyncio.get_running_loop().time()

    pieces = PieceClient()
    try:
        child_store = Store(tmp_path / "child")
        filler = PeerFiller(scheduler, "child-host", pieces)
        child_job = FileJob(url=parse_url(URL), output=tmp_path / "child-out" / "config.json")
        async with asyncio.timeout(10):
            parent_done, _ = await asyncio.gather(
                parent_reads_the_origin(),
                download_file(child_job, context(child_store, registry, filler)),
            )
        child_done = asyncio.get_running_loop().time()
        child_store.close()
    finally:
        await pieces.aclose()

    assert (tmp_path / "child-out" / "config.json").read_bytes() == DATA
    assert filler.counters.peer_bytes == len(DATA)  # from the parent, not the origin
    assert child_done - parent_done < 5.0
