"""The poisoning attack of issue 11, replayed with a rogue that holds a *valid seed
certificate* (issue 11, item 2): it takes the seed job of a plain HTTP file (no checksum from
the origin), "reads" garbage, reports the digests of that garbage as the task's origin reader
and serves it over mTLS. Every victim's output must still be byte-identical to the origin:
the first victim's spot check (pieces re-read from the origin) catches the lie, reports it,
the scheduler makes the task origin-only and blocks the rogue, and every victim reads the
origin (``docs/security.md``, "Digests no single rogue can forge")."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.config.security import TlsSettings
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.demo.hub_repos import HubRepo
from damselfly.protocol.messages import HostInfo, HostType, PeerReport, PieceDigest, TaskMeta
from damselfly.security.node_tls import NodeTls
from damselfly.security.roles import Role
from damselfly.storage.store import Store
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.hf_hub import HfTestHub
from damselfly.transport.scheduler.client import SchedulerClient

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
ROGUE = "seed-rogue"


async def test_a_rogue_seed_with_a_valid_certificate_cannot_poison_a_plain_http_file(tmp_path):
    data = os.urandom(12 * MiB + 3)
    async with LocalCluster(
        tmp_path / "c", seeds=0, peers=3, origin_files={"/plain.bin": data}, tls=True
    ) as cluster:
        assert cluster.pki is not None
        tls = NodeTls.from_settings(
            TlsSettings(enabled=True, dir=cluster.pki.node_dir(ROGUE, Role.SEED)),
            expect={Role.SEED},
        )
        served: list[str] = []
        async with _rogue_seed(cluster, tls, tmp_path / "rogue", served):
            url = cluster.origin.url("/plain.bin")
            first = await cluster.dfget(0, url, tmp_path / "0.bin", "--piece-length", "4MiB")
            assert first.code == 0, cluster.logs()
            assert served, "the rogue never got the seed job: the attack was not replayed"
            rest = await asyncio.gather(
                *(cluster.dfget(i, url, tmp_path / f"{i}.bin", "--piece-length", "4MiB")
                  for i in (1, 2))
            )  # fmt: skip
            assert [run.code for run in rest] == [0, 0], cluster.logs()
        for i in range(3):
            assert (tmp_path / f"{i}.bin").read_bytes() == data, f"victim {i} got poisoned"
        scheduler_log = cluster.schedulers[0].stderr_text()
        assert "origin-only" in scheduler_log
        assert ROGUE in scheduler_log  # the rogue is named as a blocked origin reader


async def test_a_hub_file_that_fails_its_checksum_falls_back_to_the_origin(tmp_path):
    data = os.urandom(9 * MiB + 1)
    repo = HubRepo("acme/model", {"model.bin": data}, lfs_threshold=1024)
    async with HfTestHub([repo]) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
        async with LocalCluster(tmp_path / "c", seeds=0, peers=2, env=env, tls=True) as cluster:
            assert cluster.pki is not None
            settings = TlsSettings(enabled=True, dir=cluster.pki.node_dir(ROGUE, Role.SEED))
            tls = NodeTls.from_settings(settings, expect={Role.SEED})
            served: list[str] = []
            async with _rogue_seed(cluster, tls, tmp_path / "rogue", served):
                url = "hf://acme/model/model.bin"
                runs = [await cluster.dfget(i, url, tmp_path / f"{i}.bin") for i in range(2)]
            assert [run.code for run in runs] == [0, 0], cluster.logs()
            assert served
            for i in range(2):
                assert (tmp_path / f"{i}.bin").read_bytes() == data
            assert "origin-only" in cluster.schedulers[0].stderr_text()


@contextlib.asynccontextmanager
async def _rogue_seed(
    cluster: LocalCluster, tls: NodeTls, root: Path, served: list[str]
) -> AsyncIterator[None]:
    """A seed process in all but honesty: announces itself, takes seed jobs, stores garbage,
    reports digests of the garbage as the origin reader, and serves it."""
    context = tls.server_context()
    with Store(root) as store:
        async with (
            UploadServer(store, host="127.0.0.1", port=0, tls=lambda: context) as upload,
            SchedulerClient(cluster.scheduler_addresses, channels=tls.channels()) as client,
        ):
            info = HostInfo(ROGUE, "127.0.0.1", upload.port, type=HostType.SEED, hostname="r")
            await client.announce_host(info)
            jobs = asyncio.create_task(_take_jobs(client, store, upload, served))
            try:
                yield
            finally:
                jobs.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await jobs


async def _take_jobs(
    client: SchedulerClient, store: Store, upload: UploadServer, served: list[str]
) -> None:
    async for meta in client.watch_seed_jobs(ROGUE):
        digests = _store_garbage(store, meta)
        for number in range(meta.piece_count):
            upload.piece_added(meta.task_id, number)
        report = PeerReport(ROGUE, meta.task_id, pieces=tuple(range(meta.piece_count)),
                            digests=digests, finished=True)  # fmt: skip
        await client.report_peer(report)
        served.append(meta.task_id)


def _store_garbage(store: Store, meta: TaskMeta) -> tuple[PieceDigest, ...]:
    digests = []
    with store.open_task(meta.task_id, url=meta.url, content_length=meta.content_length,
                         piece_length=meta.piece_length) as task:  # fmt: skip
        for number in range(meta.piece_count):
            start = number * meta.piece_length
            length = min(meta.piece_length, meta.content_length - start)
            piece = task.write_piece(number, b"\xee" * length)
            digests.append(PieceDigest(number, piece.digest))
    return tuple(digests)
