"""The scheduler under a registration flood (issue 11, item 4): one client with a valid
certificate announces 2,000 hosts and registers tasks as fast as it can; the scheduler stays
under its caps and keeps serving a real peer. A real grpc.aio scheduler over mTLS
(``bench/security/registration_flood.py`` does 100,000 against a scheduler process)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from damselfly.config.scheduler import load
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub
from damselfly.scheduler.admission import Admission, AdmissionLimits, CapacityError, client_of
from damselfly.scheduler.app import RunningScheduler, serve
from damselfly.scheduler.resources import Resources
from damselfly.security.files import NodeFiles, read_material
from damselfly.security.roles import Role
from damselfly.security.tls import secure_channel
from damselfly.testing.pki import TestPki


@asynccontextmanager
async def running_scheduler(
    tls: dict[str, Any], caps: dict[str, Any]
) -> AsyncIterator[RunningScheduler]:
    overrides = {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "shutdown_grace": 1,
                 "tls": tls, "caps": caps}  # fmt: skip
    stop = asyncio.Event()
    ready: asyncio.Future[RunningScheduler] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(load(overrides=overrides), stop=stop, on_ready=ready.set_result)
    )
    await asyncio.wait([ready, server], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        server.result()
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(server, 5)


@asynccontextmanager
async def stub_for(running: RunningScheduler, files: NodeFiles) -> AsyncIterator[SchedulerStub]:
    async with secure_channel(running.grpc_address, read_material(files)) as channel:
        yield SchedulerStub(channel)


async def announce(stub: SchedulerStub, host_id: str) -> None:
    info = pb.HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=4000, upload_slots=4)
    await stub.AnnounceHost(info, timeout=10)


EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
CAPS = {"max_hosts": 100, "max_tasks": 50, "max_hosts_per_client": 4,
        "host_registrations_per_second": 5, "host_registration_burst": 20}  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path)


@pytest.fixture
async def scheduler(pki: TestPki) -> AsyncIterator[RunningScheduler]:
    files = pki.node("scheduler-1", Role.SCHEDULER)
    tls = {"enabled": True, "dir": str(files.cert_file.parent)}
    async with running_scheduler(tls, caps=CAPS) as running:
        yield running


def task(n: int) -> pb.TaskMeta:
    task_id = hashlib.sha256(f"t{n}".encode()).hexdigest()
    return pb.TaskMeta(task_id=task_id, url=f"https://o.example/{n}", content_length=10,
                       piece_length=65536)  # fmt: skip


async def outcome(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_flooding_certificate_stays_under_the_caps_and_a_real_peer_is_served(
    pki, scheduler
):
    state = scheduler.state
    async with stub_for(scheduler, pki.node("peer-rogue", Role.PEER)) as rogue:
        hosts = [outcome(announce(rogue, f"fake-{n}")) for n in range(2000)]
        codes = await asyncio.gather(*hosts)
        assert codes.count(grpc.StatusCode.OK) == 4  # max_hosts_per_client
        assert codes.count(EXHAUSTED) > 1500, collections.Counter(codes)  # (some CANCELLED
        # under the flood of one connection's streams: the rogue's problem)
        mine = next(iter(state.resources.hosts))
        tasks = [
            outcome(rogue.RegisterPeer(pb.RegisterPeerRequest(host_id=mine, task=task(n))))
            for n in range(200)
        ]
        codes = await asyncio.gather(*tasks)
        assert codes.count(grpc.StatusCode.OK) == 50  # max_tasks
    assert len(state.resources.hosts) == 4
    assert len(state.resources.tasks) == 50
    async with stub_for(scheduler, pki.node("peer-real", Role.PEER)) as real:
        await announce(real, "peer-real")
        assert (
            await outcome(
                real.RegisterPeer(pb.RegisterPeerRequest(host_id="peer-real", task=task(1)))
            )
            == grpc.StatusCode.OK
        )  # a known task: no new task needed


def test_plain_text_clients_are_rate_limited_by_ip():
    now = [0.0]
    resources = Resources(lambda: now[0])
    limits = AdmissionLimits(host_registrations_per_second=2, host_registration_burst=3)
    admission = Admission(limits, resources, per_certificate=False, clock=lambda: now[0])
    client = client_of(None, "ipv4:127.0.0.1:5555")
    assert client == client_of(None, "ipv4:127.0.0.1:6666") == "ip:127.0.0.1"
    for n in range(3):
        admission.host(client, f"h{n}")
    with pytest.raises(CapacityError):
        admission.host(client, "h3")
    admission.host(client_of(None, "ipv6:[::1]:5"), "h4")  # another client
    now[0] += 1.0
    admission.host(client, "h5")
    admission.host(client, "h6")
    with pytest.raises(CapacityError):
        admission.host(client, "h7")
    assert admission.refused == 2


def test_a_reannouncement_over_the_caps_is_trimmed_not_refused():
    resources = Resources(lambda: 0.0)
    admission = Admission(AdmissionLimits(max_tasks=3), resources, per_certificate=True)
    ids = [hashlib.sha256(f"t{n}".encode()).hexdigest() for n in range(5)]
    assert admission.fitting("h1", ids) == ids[:3]
