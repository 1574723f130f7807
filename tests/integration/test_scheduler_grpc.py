"""The scheduler served by a real grpc.aio server on 127.0.0.1:0; these tests act as daemons
with real gRPC clients, and scrape /metrics and /healthz over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from damselfly.config.scheduler import load
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub
from damselfly.scheduler.app import RunningScheduler, serve
from damselfly.testing.polling import wait_until

KIB64 = 64 * 1024
PIECES = 4
TASK_ID = hashlib.sha256(b"model.safetensors").hexdigest()


def digest(n: int) -> str:
    return "blake3:" + hashlib.sha256(str(n).encode()).hexdigest()


def task_meta(task_id: str = TASK_ID, **changes: Any) -> pb.TaskMeta:
    fields: dict[str, Any] = {
        "task_id": task_id,
        "url": "https://hub.example/model.safetensors",
        "content_length": PIECES * KIB64,
        "piece_length": KIB64,
        "params": {"hf_revision": "0123abcd"},
    }
    fields.update(changes)
    return pb.TaskMeta(**fields)


@dataclass
class Scheduler:
    running: RunningScheduler
    stub: SchedulerStub
    stop: Callable[[], None]


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    settings = load(
        overrides={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "shutdown_grace": 1}
    )
    stop = asyncio.Event()
    ready: asyncio.Future[RunningScheduler] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    either: list[asyncio.Future[Any]] = [ready, server]  # serve() may fail before ready
    await asyncio.wait(either, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    running = ready.result()
    async with grpc.aio.insecure_channel(running.grpc_address) as channel:
        yield Scheduler(running, SchedulerStub(channel), stop.set)
        stop.set()
        await asyncio.wait_for(server, 5)


async def announce(
    stub: SchedulerStub, host_id: str, *, seed: bool = False, port: int = 4000
) -> None:
    kind = pb.HOST_TYPE_SEED if seed else pb.HOST_TYPE_NORMAL
    info = pb.HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=port, type=kind, upload_slots=8)
    await stub.AnnounceHost(info)


async def register(stub: SchedulerStub, host_id: str, **meta: Any) -> pb.RegisterPeerResponse:
    request = pb.RegisterPeerRequest(host_id=host_id, task=task_meta(**meta))
    response: pb.RegisterPeerResponse = await stub.RegisterPeer(request)
    return response


async def test_announced_holder_is_proposed_as_parent_with_its_digests(
    scheduler: Scheduler,
) -> None:
    stub = scheduler.stub
    await announce(stub, "holder", port=4100)
    holding = pb.TaskHolding(
        task=task_meta(),
        pieces=b"\xf0",
        origin_reader=True,
        digests=[pb.PieceDigest(number=n, digest=digest(n)) for n in range(PIECES)],
    )
    await stub.AnnounceTasks(pb.AnnounceTasksRequest(host_id="holder", tasks=[holding]))
    await announce(stub, "newcomer")
    response = await register(stub, "newcomer")
    assert response.decision == pb.FROM_PARENTS
    assert response.peer_id == f"newcomer/{TASK_ID}"
    assert response.piece_count == PIECES
    [parent] = response.parents
    assert (parent.host_id, parent.ip, parent.upload_port) == ("holder", "127.0.0.1", 4100)
    assert parent.pieces == b"\xf0"
    assert [d.digest for d in response.digests] == [digest(n) for n in range(PIECES)]


async def test_reports_pieces_and_digests_from_the_origin_reader_only(scheduler: Scheduler) -> None:
    stub = scheduler.stub
    for host in ("first", "second"):
        await announce(stub, host)
    assert (await register(stub, "first")).decision == pb.BACK_TO_SOURCE
    await stub.ReportPeer(pb.ReportPeerRequest(
        host_id="first", task_id=TASK_ID, pieces=[0, 1],
        digests=[pb.PieceDigest(number=0, digest=digest(0)),
                 pb.PieceDigest(number=1, digest=digest(1))],
    ))  # fmt: skip
    second = await register(stub, "second")
    assert second.decision == pb.FROM_PARENTS
    assert [p.host_id for p in second.parents] == ["first"]
    assert second.parents[0].pieces == b"\xc0"
    await stub.ReportPeer(pb.ReportPeerRequest(
        host_id="second", task_id=TASK_ID, pieces=[2],
        digests=[pb.PieceDigest(number=2, digest=digest(99))],  # not the origin reader
    ))  # fmt: skip
    page = await stub.GetPieceDigests(pb.GetPieceDigestsRequest(task_id=TASK_ID, from_piece=1))
    assert [(d.number, d.digest) for d in page.digests] == [(1, digest(1))]
    assert (page.piece_count, page.truncated) == (PIECES, False)
    answer = await stub.ReportPeer(
        pb.ReportPeerRequest(host_id="first", task_id=TASK_ID, want_parents=True)
    )
    assert answer.decision == pb.BACK_TO_SOURCE
    # second holds piece 2, which first lacks: peers trade both ways, cycles allowed
    assert [p.host_id for p in answer.parents] == ["second"]
    stats = scheduler.running.state.statistics()
    assert (stats.digests_accepted_total, stats.digests_ignored_total) == (2, 1)


async def test_seed_stream_receives_a_job_for_an_unknown_task(scheduler: Scheduler) -> None:
    stub = scheduler.stub
    await announce(stub, "seed-1", seed=True, port=4200)
    jobs = stub.WatchSeedJobs(pb.WatchSeedJobsRequest(host_id="seed-1"))
    await wait_until(lambda: scheduler.running.state.statistics().seeds_connected == 1)
    await announce(stub, "peer")
    response = await register(stub, "peer")
    assert response.decision == pb.WAIT_FOR_SEED
    assert [(p.host_id, p.origin_reader) for p in response.parents] == [("seed-1", True)]
    job = await asyncio.wait_for(jobs.read(), 2)
    assert job.task.task_id == TASK_ID
    assert dict(job.task.params) == {"hf_revision": "0123abcd"}
    seed_reg = await register(stub, "seed-1")
    assert seed_reg.decision == pb.BACK_TO_SOURCE
    jobs.cancel()


async def test_seed_stream_ends_cleanly_on_shutdown(scheduler: Scheduler) -> None:
    await announce(scheduler.stub, "seed-1", seed=True)
    jobs = scheduler.stub.WatchSeedJobs(pb.WatchSeedJobsRequest(host_id="seed-1"))
    await wait_until(lambda: scheduler.running.state.statistics().seeds_connected == 1)
    scheduler.stop()
    assert await asyncio.wait_for(jobs.read(), 3) is grpc.aio.EOF
    assert await jobs.code() == grpc.StatusCode.OK


async def test_leave_host_drops_its_peers(scheduler: Scheduler) -> None:
    stub = scheduler.stub
    for host in ("a", "b"):
        await announce(stub, host)
    await register(stub, "a")
    await stub.LeaveHost(pb.LeaveHostRequest(host_id="a"))
    assert (await register(stub, "b")).decision == pb.BACK_TO_SOURCE
    assert scheduler.running.state.statistics().hosts == 1


BAD_REGISTRATIONS = [
    ({"task_id": "not-hex"}, "64 lower-case hex"),
    ({"content_length": 2**62}, "content_length"),
    ({"piece_length": 10}, "piece_length 10"),
    ({"url": "https://user:secret@hub.example/x"}, "carries credentials"),
    ({"params": {"hf_token": "hf_abc"}}, "looks like a credential"),
]


@pytest.mark.parametrize(("meta", "message"), BAD_REGISTRATIONS)
async def test_invalid_registrations_are_invalid_argument(
    scheduler: Scheduler, meta: dict[str, Any], message: str
) -> None:
    await announce(scheduler.stub, "a")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(scheduler.stub, "a", **meta)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")
    assert "secret" not in (caught.value.details() or "")


async def test_bitmap_longer_than_the_task_is_invalid_argument(scheduler: Scheduler) -> None:
    await announce(scheduler.stub, "a")
    request = pb.RegisterPeerRequest(host_id="a", task=task_meta(), pieces=b"\xff\x00")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await scheduler.stub.RegisterPeer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        caught.value.details() == "piece bitmap of 2 bytes for 4 pieces (expected 1 bytes, or none)"
    )


async def _register_then_report_piece_9(stub: SchedulerStub) -> None:
    await register(stub, "a")
    await stub.ReportPeer(pb.ReportPeerRequest(host_id="a", task_id=TASK_ID, pieces=[9]))


REFUSED_CALLS: list[tuple[Callable[[SchedulerStub], Awaitable[Any]], grpc.StatusCode, str]] = [
    (lambda stub: register(stub, "ghost"), grpc.StatusCode.FAILED_PRECONDITION,
     "call AnnounceHost"),
    (lambda stub: stub.ReportPeer(pb.ReportPeerRequest(host_id="a", task_id=TASK_ID)),
     grpc.StatusCode.FAILED_PRECONDITION, "call RegisterPeer again"),
    (_register_then_report_piece_9, grpc.StatusCode.INVALID_ARGUMENT, "piece 9 out of range"),
    (lambda stub: stub.GetPieceDigests(pb.GetPieceDigestsRequest(task_id=TASK_ID)),
     grpc.StatusCode.NOT_FOUND, "not known"),
    (lambda stub: stub.WatchSeedJobs(pb.WatchSeedJobsRequest(host_id="a")).read(),
     grpc.StatusCode.FAILED_PRECONDITION, "as a seed"),
    (lambda stub: stub.AnnounceHost(pb.HostInfo(host_id="z", ip="127.0.0.1", upload_port=1)),
     grpc.StatusCode.INVALID_ARGUMENT, "upload_slots 0"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "code", "message"), REFUSED_CALLS)
async def test_refused_calls_carry_a_status_and_a_clear_message(
    scheduler: Scheduler,
    call: Callable[[SchedulerStub], Awaitable[Any]],
    code: grpc.StatusCode,
    message: str,
) -> None:
    await announce(scheduler.stub, "a")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(scheduler.stub)
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")


async def test_metrics_and_healthz(scheduler: Scheduler) -> None:
    stub = scheduler.stub
    for host in ("a", "b"):
        await announce(stub, host)
    await register(stub, "a")
    await register(stub, "b")
    base = f"http://{scheduler.running.metrics_address}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        async with session.get(f"{base}/healthz") as response:
            assert (response.status, await response.json()) == (
                200,
                {"status": "ok", "hosts": 2, "tasks": 1, "peers": 2},
            )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("damselfly_scheduler_hosts", ())] == 2
    assert samples[("damselfly_scheduler_peers", ())] == 2
    assert samples[("damselfly_scheduler_register_total", (("decision", "back_to_source"),))] == 1
    assert samples[("damselfly_scheduler_register_total", (("decision", "from_parents"),))] == 1
    assert samples[("damselfly_scheduler_seed_jobs_total", ())] == 0
    _promtool_check(text)


def _promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # parsing above is the lint; promtool is optional (Debian package prometheus)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no lint warnings either
