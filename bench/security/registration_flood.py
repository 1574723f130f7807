"""100,000 fake registrations from one client against a scheduler process (issue 11, item 4).

A scheduler runs over mTLS with a throw-away CA (``damselfly.demo.pki``) and its default
caps. One rogue client holding a valid *peer* certificate announces ``--hosts`` distinct hosts
(``--in-flight`` calls at once) and registers ``--tasks`` distinct tasks for the hosts it got;
then a real peer with its own certificate announces itself and registers a task. Prints the
outcomes, the scheduler's host/task/peer counts and its resident memory (VmRSS).

    .venv/bin/python bench/security/registration_flood.py --hosts 100000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import aiohttp
import grpc

from damselfly.demo.pki import CLUSTER_TLS_DIR_ENV, LocalPki, Role
from damselfly.demo.processes import ready_fields
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub
from damselfly.security.files import NodeFiles, read_material
from damselfly.security.roles import role_server_name
from damselfly.security.tls import secure_channel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="regflood-") as root:
        return asyncio.run(run(Path(root), args.hosts, args.tasks, args.in_flight))


async def run(root: Path, hosts: int, tasks: int, in_flight: int) -> int:
    pki = LocalPki(root / "pki")
    env = {CLUSTER_TLS_DIR_ENV: str(pki.node_dir("scheduler-0", Role.SCHEDULER))}
    argv = [sys.executable, "-m", "damselfly.cli.scheduler", "--listen", "127.0.0.1:0",
            "--metrics-listen", "127.0.0.1:0", "--log-level", "warn"]  # fmt: skip
    log = (root / "scheduler.log").open("wb")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        assert process.stdout is not None
        ready = ready_fields(process.stdout.readline().partition(":")[2])
        rogue = NodeFiles.in_dir(pki.node_dir("peer-rogue", Role.PEER))
        real = NodeFiles.in_dir(pki.node_dir("peer-real", Role.PEER))
        started = time.monotonic()
        host_codes, task_codes = await flood(ready["grpc"], rogue, hosts, tasks, in_flight)
        seconds = time.monotonic() - started
        real_code = await real_peer(ready["grpc"], real)
        health = await healthz(ready["metrics"])
        rss = _rss_kib(process.pid)
    finally:
        process.terminate()
        process.wait()
        log.close()
    print(f"rogue host announcements: {hosts} in {seconds:.1f} s: {dict(host_codes)}")
    print(f"rogue task registrations: {tasks}: {dict(task_codes)}")
    print(f"scheduler holds: {health}; VmRSS {rss // 1024} MiB")
    print(f"real peer: {real_code}")
    return 0 if real_code == "OK" else 1


async def flood(
    address: str, files: NodeFiles, hosts: int, tasks: int, in_flight: int
) -> tuple[collections.Counter[str], collections.Counter[str]]:
    channel = secure_channel(address, read_material(files), server_name=_name())
    async with channel:
        stub = SchedulerStub(channel)
        host_codes = await _many(
            (stub.AnnounceHost(_host(f"fake-{n}"), timeout=30) for n in range(hosts)), in_flight
        )
        owned = "fake-0"
        for n in range(hosts):  # the first host id the scheduler took
            try:
                await stub.AnnounceHost(_host(f"fake-{n}"), timeout=30)
            except grpc.aio.AioRpcError:
                continue
            owned = f"fake-{n}"
            break
        task_codes = await _many(
            (stub.RegisterPeer(pb.RegisterPeerRequest(host_id=owned, task=_task(n)), timeout=30)
             for n in range(tasks)), in_flight,
        )  # fmt: skip
    return host_codes, task_codes


async def _many(calls: object, in_flight: int) -> collections.Counter[str]:
    codes: collections.Counter[str] = collections.Counter()
    gate = asyncio.Semaphore(in_flight)

    async def one(call: Awaitable[object]) -> None:
        async with gate:
            try:
                await call
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1

    batch: list[asyncio.Task[None]] = []
    for call in calls:  # type: ignore[attr-defined]
        batch.append(asyncio.ensure_future(one(call)))
        if len(batch) >= 10 * in_flight:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)
    return codes


async def real_peer(address: str, files: NodeFiles) -> str:
    async with secure_channel(address, read_material(files), server_name=_name()) as channel:
        stub = SchedulerStub(channel)
        try:
            await stub.AnnounceHost(_host("peer-real"), timeout=10)
            request = pb.RegisterPeerRequest(host_id="peer-real", task=_task(0))
            await stub.RegisterPeer(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return "OK"


async def healthz(address: str) -> object:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}/healthz") as r:
        return await r.json()


def _name() -> str:
    return role_server_name(Role.SCHEDULER)


def _host(host_id: str) -> pb.HostInfo:
    return pb.HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=4000, upload_slots=4)


def _task(n: int) -> pb.TaskMeta:
    task_id = hashlib.sha256(f"task-{n}".encode()).hexdigest()
    return pb.TaskMeta(task_id=task_id, url=f"https://o.example/{n}", content_length=1 << 20,
                       piece_length=1 << 20)  # fmt: skip


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
