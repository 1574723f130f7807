"""The PKI as an operator uses it, every step a real process on loopback: ``damselfly ca
init``, ``ca token``, ``ca serve``, ``damselfly enroll`` on a "node", ``ca issue`` for the
scheduler, the scheduler started with ``DAMSELFLY_TLS_DIR`` only, and the enrolled node calling
it over mTLS while a process without a certificate cannot. The token never shows up in any
output or file but the node's own command line."""

from __future__ import annotations

import asyncio
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
from damselfly.security.files import NodeFiles, read_material
from damselfly.security.tls import secure_channel

pytestmark = pytest.mark.slow


async def damselfly(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.damselfly", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@asynccontextmanager
async def service(
    argv: list[str], banner: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A long-running process that prints ``banner...`` once ready; yields that line."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith(banner), line
        yield line.strip(), process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)


async def test_operator_flow_from_ca_init_to_an_mtls_scheduler(tmp_path: Path) -> None:
    ca_dir, node_dir, sched_dir = tmp_path / "ca", tmp_path / "node", tmp_path / "sched"
    code, fingerprint, _ = await damselfly("ca", "init", "--dir", str(ca_dir))
    assert code == 0
    fingerprint = fingerprint.strip()
    code, token, _ = await damselfly("ca", "token", "--dir", str(ca_dir), "--role", "peer")
    assert code == 0
    token = token.strip()
    assert token.startswith("dfjt_")
    serve = [sys.executable, "-m", "damselfly.cli.damselfly", "ca", "serve", "--dir", str(ca_dir),
             "--listen", "127.0.0.1:0"]  # fmt: skip
    async with service(serve, "enrollment listening: https://") as (line, enrollment):
        url = line.split(": ", 1)[1]
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        enroll = ["enroll", "--server", url, "--ca-fingerprint", fingerprint, "--dir",
                  str(node_dir), "--role", "peer", "--node-id", "peer-1"]  # fmt: skip
        code, _, err = await damselfly(*enroll, "--token-file", str(token_file))
        assert (code, err) == (0, "")
        code, _, err = await damselfly(*enroll, "--token-file", str(token_file))
        assert code == 1
        assert (
            err == f"damselfly: error: {url}/v1/enroll: 403: unknown or already used join token\n"
        )
        code, _, err = await damselfly("renew", "--dir", str(node_dir))
        assert (code, err) == (0, "")
        enrollment.send_signal(signal.SIGTERM)
        _, service_log = await asyncio.wait_for(enrollment.communicate(), 15)
    assert "enrolled node peer-1 as peer" in service_log.decode()
    code, _, _ = await damselfly("ca", "issue", "--dir", str(ca_dir), "--role", "scheduler",
                                 "--node-id", "scheduler-1", "--ip", "127.0.0.1",
                                 "--out", str(sched_dir))  # fmt: skip
    assert code == 0
    env = {**os.environ, "DAMSELFLY_TLS_DIR": str(sched_dir)}
    scheduler = [sys.executable, "-m", "damselfly.cli.scheduler", "--listen", "127.0.0.1:0",
                 "--metrics-listen", "127.0.0.1:0"]  # fmt: skip
    async with service(scheduler, "scheduler listening: grpc=", env) as (line, process):
        address = line.split("grpc=")[1].split()[0]
        material = read_material(NodeFiles.in_dir(node_dir))
        info = pb.HostInfo(host_id="host-1", ip="127.0.0.1", upload_port=4000, upload_slots=4)
        async with secure_channel(address, material) as channel:
            await SchedulerStub(channel).AnnounceHost(info, timeout=10)
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await SchedulerStub(channel).AnnounceHost(info, timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        process.send_signal(signal.SIGTERM)
        _, scheduler_log = await asyncio.wait_for(process.communicate(), 15)
    assert b"running without TLS" not in scheduler_log
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != token_file:
            assert token.encode() not in path.read_bytes(), path
    assert token.encode() not in service_log + scheduler_log


async def test_ca_commands_fail_on_one_line(tmp_path: Path) -> None:
    code, _, err = await damselfly(
        "ca", "token", "--dir", str(tmp_path / "nowhere"), "--role", "peer"
    )
    assert code == 1
    assert err.startswith("damselfly: error: ")
    assert err.count("\n") == 1
    code, _, err = await damselfly("ca", "init", "--dir", str(tmp_path / "ca"), "--years", "0")
    assert (code, err) == (1, "damselfly: error: CA validity 0 years: expected 1 to 100\n")
