"""Fake registrations by the 100,000 from one client against a scheduler process (issue 11,
item 4); ``bench/security/registration_flood.py`` and ``tests/e2e/test_floods.py`` run it.

``run_registration_flood(root, hosts=..., tasks=...)`` starts ``damselfly scheduler`` over
mTLS with a throw-away CA (``damselfly.demo.pki``) and its default caps. One rogue holding a
valid *peer* certificate announces ``hosts`` distinct hosts, then registers ``tasks``
distinct tasks for the first host the scheduler took (announcing it again every 5 s, so
that it stays known: the tasks meet the caps, not an expired host). The rogue is
``processes`` worker processes (``python -m damselfly.testing.registration_flood``), each
with its own channel and the same certificate (to the scheduler: one client), each keeping
``in_flight`` calls open; a call is made only when a slot is free (a grpc.aio call starts
when it is made). Where the time goes: gRPC's per-call cost on both sides, about 200-300 us
of CPU a call in the scheduler (grpc.aio, one Python thread) and about as much in the
client; on a 2-core machine one worker with 500 calls in flight used the least CPU and
time (2 x 250, 2 x 50 and 4 x 100 were slower: the processes compete with the scheduler
for the same two cores), hence the defaults; ``processes`` is for machines with cores to
spare. While the tasks flood, and after it, a real peer with its own certificate announces
itself and registers a task. Returns the outcomes, the scheduler's host/task/peer counts,
its memory (VmRSS, VmHWM) and how many lines it logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from damselfly.demo.pki import CLUSTER_TLS_DIR_ENV, LocalPki, Role
from damselfly.demo.processes import child_env, ready_fields, stop_process
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub
from damselfly.security.files import NodeFiles, read_material
from damselfly.security.roles import role_server_name
from damselfly.security.tls import secure_channel

Codes = collections.Counter[str]
REAL_PEER = "peer-real"
CALL_TIMEOUT = 30.0  # seconds, each flood call
REAL_TIMEOUT = 10.0  # seconds, each real peer call
KEEPALIVE_INTERVAL = 5.0  # seconds between the rogue's announcements of the host it holds


@dataclass
class RegistrationFlood:
    """What happened: codes by gRPC status name, seconds, the scheduler afterwards."""

    host_codes: Codes = field(default_factory=collections.Counter)
    task_codes: Codes = field(default_factory=collections.Counter)
    seconds: float = 0.0
    real_during: str = ""  # the real peer's outcome while the tasks flood ran
    real_during_seconds: float = 0.0
    real_after: str = ""
    holds: dict[str, Any] = field(default_factory=dict)  # /healthz: hosts, tasks, peers
    rss_kib: int = 0
    peak_rss_kib: int = 0  # VmHWM: the high-water mark over the whole run
    log_lines: int = 0


async def run_registration_flood(
    root: Path,
    *,
    hosts: int,
    tasks: int,
    in_flight: int = 500,
    processes: int = 1,
    scheduler_env: Mapping[str, str] | None = None,
) -> RegistrationFlood:
    """``scheduler_env``: more environment for the scheduler (``DAMSELFLY_SCHEDULER_CAPS__*``)."""
    pki = LocalPki(root / "pki")
    rogue = pki.node_dir("peer-rogue", Role.PEER)
    real = NodeFiles.in_dir(pki.node_dir(REAL_PEER, Role.PEER))
    outcome = RegistrationFlood()
    async with _scheduler(root, pki, scheduler_env or {}) as (process, ready):
        address = ready["grpc"]
        started = time.monotonic()
        outcome.host_codes = await _workers("hosts", address, rogue, hosts, in_flight, processes)
        owned = await _owned_host(address, rogue, hosts)
        workers = _workers("tasks", address, rogue, tasks, in_flight, processes, owned)
        outcome.task_codes, during = await asyncio.gather(workers, _real_peer_midway(address, real))
        outcome.seconds = time.monotonic() - started
        outcome.real_during, outcome.real_during_seconds = during
        outcome.real_after = (await _real_peer(address, real))[0]
        outcome.holds = await _healthz(ready["metrics"])
        outcome.rss_kib, outcome.peak_rss_kib = _memory_kib(process.pid)
    outcome.log_lines = len((root / "scheduler.log").read_bytes().splitlines())
    return outcome


@asynccontextmanager
async def _scheduler(
    root: Path, pki: LocalPki, extra_env: Mapping[str, str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    tls_dir = str(pki.node_dir("scheduler-0", Role.SCHEDULER))
    env = {**child_env(extra_env), CLUSTER_TLS_DIR_ENV: tls_dir}
    argv = ["-m", "damselfly.cli.scheduler", "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0", "--log-level", "warn"]  # fmt: skip
    with (root / "scheduler.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=log, env=env
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"the scheduler did not start: see {root / 'scheduler.log'}")
        yield process, ready_fields(line.partition(":")[2])
    finally:
        await stop_process(process, signal.SIGTERM, 10.0)


async def _workers(
    phase: str, address: str, cert_dir: Path, count: int, in_flight: int, processes: int,
    host_id: str = "",
) -> Codes:  # fmt: skip
    """``count`` calls of ``phase`` split over ``processes`` workers; their codes summed."""
    bounds = [count * i // processes for i in range(processes + 1)]
    runs = [
        _worker(phase, address, cert_dir, bounds[i], bounds[i + 1], in_flight, host_id)
        for i in range(processes)
    ]
    codes: Codes = collections.Counter()
    for counted in await asyncio.gather(*runs):
        codes.update(counted)
    return codes


async def _worker(
    phase: str, address: str, cert_dir: Path, start: int, stop: int, in_flight: int,
    host_id: str,
) -> Codes:  # fmt: skip
    args = [phase, address, str(cert_dir), str(start), str(stop), str(in_flight), host_id]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            await stop_process(process, signal.SIGKILL, 0.0)
    if process.returncode != 0:
        raise RuntimeError(f"flood worker failed: {stderr.decode(errors='replace')[-2000:]}")
    return collections.Counter(json.loads(stdout))


async def _owned_host(address: str, cert_dir: Path, hosts: int) -> str:
    """The first fake host the scheduler took (announcing a known host again passes)."""
    async with _channel(address, NodeFiles.in_dir(cert_dir)) as stub:
        for n in range(hosts):
            try:
                await stub.AnnounceHost(fake_host(f"fake-{n}"), timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError:
                continue
            return f"fake-{n}"
    return "fake-0"


async def _real_peer_midway(address: str, files: NodeFiles) -> tuple[str, float]:
    await asyncio.sleep(2.0)  # the workers have started and flood by now
    return await _real_peer(address, files)


async def _real_peer(address: str, files: NodeFiles) -> tuple[str, float]:
    """A real peer announces itself and registers a task: the outcome and its seconds."""
    started = time.monotonic()
    async with _channel(address, files) as stub:
        try:
            await stub.AnnounceHost(fake_host(REAL_PEER), timeout=REAL_TIMEOUT)
            request = pb.RegisterPeerRequest(host_id=REAL_PEER, task=fake_task(0))
            await stub.RegisterPeer(request, timeout=REAL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, time.monotonic() - started
    return "OK", time.monotonic() - started


@asynccontextmanager
async def _channel(address: str, files: NodeFiles) -> AsyncIterator[SchedulerStub]:
    server_name = role_server_name(Role.SCHEDULER)
    async with secure_channel(address, read_material(files), server_name=server_name) as channel:
        yield SchedulerStub(channel)  # type: ignore[no-untyped-call]


async def _healthz(address: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}/healthz") as r:
        return dict(await r.json())


def _memory_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of ``pid``."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def fake_host(host_id: str) -> pb.HostInfo:
    return pb.HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=4000, upload_slots=4)


def fake_task(n: int) -> pb.TaskMeta:
    task_id = hashlib.sha256(f"task-{n}".encode()).hexdigest()
    return pb.TaskMeta(task_id=task_id, url=f"https://o.example/{n}", content_length=1 << 20,
                       piece_length=1 << 20)  # fmt: skip


# -- a worker process -------------------------------------------------------------------------


async def _flood(
    phase: str, address: str, cert_dir: Path, numbers: range, in_flight: int, host_id: str
) -> Codes:
    async with _channel(address, NodeFiles.in_dir(cert_dir)) as stub:

        def announce(n: int) -> Awaitable[object]:
            call: Awaitable[object] = stub.AnnounceHost(
                fake_host(f"fake-{n}"), timeout=CALL_TIMEOUT
            )
            return call

        def register(n: int) -> Awaitable[object]:
            request = pb.RegisterPeerRequest(host_id=host_id, task=fake_task(n))
            call: Awaitable[object] = stub.RegisterPeer(request, timeout=CALL_TIMEOUT)
            return call

        if phase == "hosts":
            return await _many(announce, numbers, in_flight)
        async with asyncio.TaskGroup() as group:  # the host stays known (host_ttl: 20 s)
            keeper = group.create_task(_keep_announcing(stub, host_id))
            codes = await _many(register, numbers, in_flight)
            keeper.cancel()
        return codes


async def _keep_announcing(stub: SchedulerStub, host_id: str) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_INTERVAL)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.AnnounceHost(fake_host(host_id), timeout=CALL_TIMEOUT)


async def _many(
    call: Callable[[int], Awaitable[object]], numbers: Iterable[int], in_flight: int
) -> Codes:
    """``call(n)`` for each of ``numbers``, ``in_flight`` at once; counted by gRPC status.
    (A grpc.aio call starts when made: each is made only when a slot is free.)"""
    codes: Codes = collections.Counter()
    pending = iter(numbers)

    async def caller() -> None:
        for n in pending:
            try:
                await call(n)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(in_flight):
            group.create_task(caller())
    return codes


def main(argv: list[str]) -> int:
    phase, address, cert_dir, start, stop, in_flight, *rest = argv
    numbers = range(int(start), int(stop))
    host_id = rest[0] if rest else ""
    codes = asyncio.run(_flood(phase, address, Path(cert_dir), numbers, int(in_flight), host_id))
    sys.stdout.write(json.dumps(codes) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
