"""``python -m damselfly.cli.scheduler`` as a real process: killed and restarted on the same
port, its state is rebuilt from the daemons' re-announcements; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub

KIB64 = 64 * 1024
PIECES = 3
TASK_ID = hashlib.sha256(b"restart").hexdigest()
TASK = pb.TaskMeta(
    task_id=TASK_ID, url="https://o.example/f", content_length=PIECES * KIB64, piece_length=KIB64
)
DIGESTS = [
    pb.PieceDigest(number=n, digest="blake3:" + hashlib.sha256(bytes([n])).hexdigest())
    for n in range(PIECES)
]


@asynccontextmanager
async def scheduler_process(
    listen: str, tmp_path: Path, *, kill: bool = False
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    config = tmp_path / "scheduler.yaml"
    config.write_text("metrics_listen: 127.0.0.1:0\nlog_level: warn\n")
    env = {**os.environ, "DAMSELFLY_SCHEDULER_SHUTDOWN_GRACE": "1s"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.scheduler", "--config", str(config),
        "--listen", listen, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        assert line.startswith("scheduler listening: grpc="), line
        yield line.split("grpc=")[1].split()[0], process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)


async def announce_all(stub: SchedulerStub, host_id: str, pieces: bytes) -> None:
    """What a daemon does on (re)connecting: announce the host, then what it holds."""
    await stub.AnnounceHost(
        pb.HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=4000, upload_slots=4)
    )
    if pieces:
        holding = pb.TaskHolding(task=TASK, pieces=pieces, origin_reader=True, digests=DIGESTS)
        await stub.AnnounceTasks(pb.AnnounceTasksRequest(host_id=host_id, tasks=[holding]))


async def test_restarted_scheduler_rebuilds_state_from_announcements(tmp_path: Path) -> None:
    async with (
        scheduler_process("127.0.0.1:0", tmp_path, kill=True) as (address, first),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = SchedulerStub(channel)
        await announce_all(stub, "reader", b"")
        reg = await stub.RegisterPeer(pb.RegisterPeerRequest(host_id="reader", task=TASK))
        assert reg.decision == pb.BACK_TO_SOURCE
        await stub.ReportPeer(pb.ReportPeerRequest(
            host_id="reader", task_id=TASK_ID, pieces=range(PIECES), digests=DIGESTS,
            finished=True,
        ))  # fmt: skip
    assert first.returncode == -signal.SIGKILL  # killed: nothing was saved on the way out

    async with (
        scheduler_process(address, tmp_path) as (_, second),  # same port, empty state
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = SchedulerStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ReportPeer(pb.ReportPeerRequest(host_id="reader", task_id=TASK_ID))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        await announce_all(stub, "reader", b"\xe0")  # the daemon re-announces
        await announce_all(stub, "newcomer", b"")
        reg = await stub.RegisterPeer(pb.RegisterPeerRequest(host_id="newcomer", task=TASK))
        assert reg.decision == pb.FROM_PARENTS
        assert [(p.host_id, p.pieces) for p in reg.parents] == [("reader", b"\xe0")]
        assert list(reg.digests) == DIGESTS
    assert second.returncode == 0  # SIGTERM: graceful
    assert second.stderr is not None
    assert b"Traceback" not in await second.stderr.read()
