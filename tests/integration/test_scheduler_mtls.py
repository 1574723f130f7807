"""The scheduler over mTLS (a real grpc.aio server on 127.0.0.1:0, real certificates from a
throw-away cluster CA): no certificate, no connection; a peer certificate cannot act as a seed
or report origin digests it was not asked to read; a seed certificate can; host ids belong to
the node that announced them; plain text still works, with its warning."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from damselfly.config.scheduler import load
from damselfly.config.security import TlsSettings
from damselfly.core.errors import SchedulerError
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub, add_SchedulerServicer_to_server
from damselfly.scheduler.app import RunningScheduler, serve
from damselfly.scheduler.service import SchedulerService
from damselfly.scheduler.state import SchedulerState
from damselfly.security.certs import NodeIdentity, issue
from damselfly.security.files import NodeFiles, read_material, write_material
from damselfly.security.roles import Role
from damselfly.security.tls import (
    ChannelMaker,
    ReloadingFiles,
    grpc_server_credentials,
    secure_channel,
)
from damselfly.testing.pki import TestPki

KIB64 = 64 * 1024
PIECES = 2
TASK_ID = hashlib.sha256(b"weights.bin").hexdigest()
TASK = pb.TaskMeta(
    task_id=TASK_ID, url="https://o.example/w", content_length=PIECES * KIB64, piece_length=KIB64
)
DIGESTS = [pb.PieceDigest(number=n, digest="blake3:" + "ab" * 32) for n in range(PIECES)]
DENIED = grpc.StatusCode.PERMISSION_DENIED


@asynccontextmanager
async def running_scheduler(tls: dict[str, Any] | None) -> AsyncIterator[RunningScheduler]:
    overrides: dict[str, Any] = {
        "listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "shutdown_grace": 1,
    }  # fmt: skip
    if tls is not None:
        overrides["tls"] = tls
    stop = asyncio.Event()
    ready: asyncio.Future[RunningScheduler] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(load(overrides=overrides), stop=stop, on_ready=ready.set_result)
    )
    await asyncio.wait([ready, server], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        server.result()  # serve() failed before it was ready: raise its error
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(server, 5)


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path)


@pytest.fixture
async def scheduler(pki: TestPki) -> AsyncIterator[RunningScheduler]:
    files = pki.node("scheduler-1", Role.SCHEDULER)
    async with running_scheduler({"enabled": True, "dir": str(files.cert_file.parent)}) as running:
        yield running


@asynccontextmanager
async def stub_for(running: RunningScheduler, files: NodeFiles) -> AsyncIterator[SchedulerStub]:
    async with secure_channel(running.grpc_address, read_material(files)) as channel:
        yield SchedulerStub(channel)


async def announce(stub: SchedulerStub, host_id: str, *, seed: bool = False) -> None:
    kind = pb.HOST_TYPE_SEED if seed else pb.HOST_TYPE_NORMAL
    info = pb.HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=4000, type=kind, upload_slots=4)
    await stub.AnnounceHost(info, timeout=5)


async def register(stub: SchedulerStub, host_id: str) -> pb.RegisterPeerResponse:
    response: pb.RegisterPeerResponse = await stub.RegisterPeer(
        pb.RegisterPeerRequest(host_id=host_id, task=TASK), timeout=5
    )
    return response


async def status_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    code: grpc.StatusCode = caught.value.code()
    return code


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_process_without_a_cluster_certificate_fails_at_tls(
    scheduler: RunningScheduler, pki: TestPki, tmp_path: Path
) -> None:
    info = pb.HostInfo(host_id="rogue", ip="127.0.0.1", upload_port=1, type=pb.HOST_TYPE_SEED)
    async with grpc.aio.insecure_channel(scheduler.grpc_address) as channel:
        code = await status_of(lambda: SchedulerStub(channel).AnnounceHost(info, timeout=5))
    assert code is grpc.StatusCode.UNAVAILABLE
    trusting = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)  # no client cert
    async with grpc.aio.secure_channel(scheduler.grpc_address, trusting) as channel:
        code = await status_of(lambda: SchedulerStub(channel).AnnounceHost(info, timeout=5))
    assert code is grpc.StatusCode.UNAVAILABLE
    other_ca = TestPki(tmp_path / "elsewhere").node("seed-x", Role.SEED)  # another cluster
    async with stub_for(scheduler, other_ca) as stub:
        assert (
            await status_of(lambda: announce(stub, "rogue", seed=True))
            is grpc.StatusCode.UNAVAILABLE
        )
    assert scheduler.state.resources.hosts == {}


async def test_a_peer_certificate_cannot_act_as_a_seed(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    async with stub_for(scheduler, pki.node("peer-1", Role.PEER)) as stub:
        assert await status_of(lambda: announce(stub, "fake-seed", seed=True)) is DENIED
        await announce(stub, "fake-seed")  # as what it is, a normal peer: fine
        jobs = stub.WatchSeedJobs(pb.WatchSeedJobsRequest(host_id="fake-seed"))
        assert await status_of(jobs.read) is DENIED
    assert scheduler.state.statistics().seeds_connected == 0
    assert not scheduler.state.resources.hosts["fake-seed"].is_seed
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{scheduler.metrics_address}/metrics") as response,
    ):
        text = await response.text()
    assert "damselfly_scheduler_access_refused_total 2.0" in text.splitlines()


async def test_only_the_chosen_reader_reports_digests(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    async with (
        stub_for(scheduler, pki.node("seed-1", Role.SEED)) as seed,
        stub_for(scheduler, pki.node("peer-1", Role.PEER)) as peer,
    ):
        await announce(seed, "seed-1", seed=True)
        jobs = seed.WatchSeedJobs(pb.WatchSeedJobsRequest(host_id="seed-1"))
        await eventually(lambda: scheduler.state.statistics().seeds_connected == 1)
        await announce(peer, "peer-1")
        assert (await register(peer, "peer-1")).decision == pb.WAIT_FOR_SEED
        forged = pb.ReportPeerRequest(
            host_id="peer-1", task_id=TASK_ID, pieces=[0], digests=DIGESTS
        )
        assert await status_of(lambda: peer.ReportPeer(forged, timeout=5)) is DENIED
        job = await asyncio.wait_for(jobs.read(), 5)
        assert job.task.task_id == TASK_ID
        assert (await register(seed, "seed-1")).decision == pb.BACK_TO_SOURCE
        report = pb.ReportPeerRequest(
            host_id="seed-1", task_id=TASK_ID, pieces=[0, 1], digests=DIGESTS
        )
        await seed.ReportPeer(report, timeout=5)
        page = await peer.GetPieceDigests(pb.GetPieceDigestsRequest(task_id=TASK_ID), timeout=5)
        assert [d.digest for d in page.digests] == [d.digest for d in DIGESTS]
        jobs.cancel()


async def test_a_peer_told_to_read_the_origin_reports_its_digests(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    async with stub_for(scheduler, pki.node("peer-1", Role.PEER)) as peer:
        await announce(peer, "peer-1")
        assert (await register(peer, "peer-1")).decision == pb.BACK_TO_SOURCE
        report = pb.ReportPeerRequest(
            host_id="peer-1", task_id=TASK_ID, pieces=[0], digests=DIGESTS
        )
        await peer.ReportPeer(report, timeout=5)
    assert scheduler.state.statistics().digests_accepted_total == PIECES


async def test_a_peer_cannot_restore_origin_digests_after_a_restart(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    claim = pb.TaskHolding(task=TASK, pieces=b"\xc0", origin_reader=True, digests=DIGESTS)
    async with stub_for(scheduler, pki.node("peer-1", Role.PEER)) as peer:
        await announce(peer, "peer-1")
        await peer.AnnounceTasks(pb.AnnounceTasksRequest(host_id="peer-1", tasks=[claim]))
        page = await peer.GetPieceDigests(pb.GetPieceDigestsRequest(task_id=TASK_ID), timeout=5)
    assert list(page.digests) == []  # its pieces are known, its word on digests is not taken
    assert scheduler.state.resources.peers[f"peer-1/{TASK_ID}"].pieces.count == PIECES
    async with stub_for(scheduler, pki.node("seed-1", Role.SEED)) as seed:
        await announce(seed, "seed-1", seed=True)
        await seed.AnnounceTasks(pb.AnnounceTasksRequest(host_id="seed-1", tasks=[claim]))
        page = await seed.GetPieceDigests(pb.GetPieceDigestsRequest(task_id=TASK_ID), timeout=5)
    assert len(page.digests) == PIECES


async def test_a_host_id_belongs_to_the_node_that_announced_it(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    async with (
        stub_for(scheduler, pki.node("peer-1", Role.PEER)) as owner,
        stub_for(scheduler, pki.node("peer-2", Role.PEER)) as other,
    ):
        await announce(owner, "host-a")
        assert await status_of(lambda: announce(other, "host-a")) is DENIED
        assert await status_of(lambda: register(other, "host-a")) is DENIED
        leave = pb.LeaveHostRequest(host_id="host-a")
        assert await status_of(lambda: other.LeaveHost(leave, timeout=5)) is DENIED
        assert "host-a" in scheduler.state.resources.hosts
        await owner.LeaveHost(leave, timeout=5)
        await announce(other, "host-a")  # gone: the id may be taken anew


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SCHEDULER, Role.MANAGER])
async def test_roles_that_are_not_nodes_cannot_register(
    scheduler: RunningScheduler, pki: TestPki, role: Role
) -> None:
    async with stub_for(scheduler, pki.node(f"{role}-1", role)) as stub:
        assert await status_of(lambda: announce(stub, "h")) is DENIED
        query = pb.GetPieceDigestsRequest(task_id=TASK_ID)
        assert await status_of(lambda: stub.GetPieceDigests(query, timeout=5)) is DENIED


async def test_plain_text_mode_still_works_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="damselfly.scheduler"):
        async with (
            running_scheduler(None) as running,
            grpc.aio.insecure_channel(running.grpc_address) as channel,
        ):
            stub = SchedulerStub(channel)
            await announce(stub, "seed-1", seed=True)
            await announce(stub, "peer-1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "running without TLS: any process that reaches this port is trusted (gRPC on 127.0.0.1:0)"
    ]


async def test_the_channel_maker_follows_the_settings_and_renewals(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    files = pki.node("peer-1", Role.PEER)
    settings = TlsSettings(enabled=True, dir=files.cert_file.parent)
    assert ChannelMaker.from_settings(settings, Role.SCHEDULER).tls
    assert not ChannelMaker.from_settings(TlsSettings(), Role.SCHEDULER).tls
    maker = ChannelMaker(ReloadingFiles(files, poll_interval=0.0))
    async with maker.open(scheduler.grpc_address) as channel:
        await announce(SchedulerStub(channel), "host-1")
    assert maker.generation == 0
    write_material(files.cert_file.parent, issue(pki.ca, NodeIdentity("peer-1", Role.PEER)))
    assert maker.generation == 1  # the daemon reopens its channel
    async with maker.open(scheduler.grpc_address) as channel:
        await announce(SchedulerStub(channel), "host-1")  # same node id: still its host


async def test_a_peer_certificate_cannot_pass_for_the_scheduler(
    scheduler: RunningScheduler, pki: TestPki
) -> None:
    """A rogue serving the scheduler's API with a peer certificate that lists 127.0.0.1: a
    daemon's channel (which checks the scheduler role's name) does not connect to it."""
    peer_files = pki.node("peer-1", Role.PEER)
    rogue_state = SchedulerState()
    rogue = grpc.aio.server()
    add_SchedulerServicer_to_server(SchedulerService(rogue_state), rogue)
    port = rogue.add_secure_port("127.0.0.1:0", grpc_server_credentials(ReloadingFiles(peer_files)))
    await rogue.start()
    settings = TlsSettings(enabled=True, dir=peer_files.cert_file.parent)
    maker = ChannelMaker.from_settings(settings, Role.SCHEDULER)
    try:
        async with maker.open(f"127.0.0.1:{port}") as channel:
            code = await status_of(lambda: announce(SchedulerStub(channel), "host-1"))
        assert code is grpc.StatusCode.UNAVAILABLE
        async with maker.open(scheduler.grpc_address) as channel:  # the real one
            await announce(SchedulerStub(channel), "host-1")
    finally:
        await rogue.stop(None)
    assert rogue_state.resources.hosts == {}


async def test_the_scheduler_refuses_to_serve_with_another_role(pki: TestPki) -> None:
    peer_files = pki.node("peer-1", Role.PEER)
    with pytest.raises(SchedulerError, match="a peer certificate, not a scheduler's"):
        async with running_scheduler({"enabled": True, "dir": str(peer_files.cert_file.parent)}):
            pass
