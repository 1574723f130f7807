"""The members' side of the control plane without processes: the plane's rules and limits,
the live origin bucket, the guarded runner, the token and the scheduler's refusal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from damselfly.backends.bodies import open_body
from damselfly.config.manager_link import ManagerLinkSettings, read_token
from damselfly.core.blocklist import BlockQuery
from damselfly.core.errors import BlockedError, ConfigError
from damselfly.core.urls import parse_url
from damselfly.daemon.control.guard import GuardedRunner, RequestPacer
from damselfly.daemon.control.throttle import LiveBucket, ThrottledBackend
from damselfly.download.events import NullObserver
from damselfly.download.request import DownloadRequest
from damselfly.protocol.local_api import RunResult
from damselfly.protocol.manager import DynamicConfig
from damselfly.protocol.messages import TaskMeta
from damselfly.protocol.rate_limits import RateLimitValues
from damselfly.transport.control_plane import ControlPlane, effective_limits
from damselfly.transport.scheduler.channels import final_error

RULE = {"id": 12, "kind": "repo", "pattern": "hf://org/model", "reason": "CVE-2026-1234",
        "until": "2099-12-31T00:00:00Z"}  # fmt: skip


def config(**extra: Any) -> DynamicConfig:
    return DynamicConfig.model_validate(
        {"version": "v1", "config_interval": 1, "keepalive_interval": 1, **extra}
    )


def test_the_smaller_of_cluster_and_host_limit_applies() -> None:
    limits = effective_limits(
        config(
            rate_limits={
                "cluster": {"upload_bps": 100, "back_to_source_bps": 50},
                "host": {"upload_bps": 70, "requests_per_second": 2.0},
            }
        )
    )
    assert limits == RateLimitValues(upload_bps=70, back_to_source_bps=50, requests_per_second=2.0)


def test_listeners_hear_each_change_of_the_limits_once() -> None:
    plane = ControlPlane()
    heard: list[int | None] = []
    plane.on_limits(lambda limits: heard.append(limits.back_to_source_bps))
    plane.apply(config(rate_limits={"cluster": {"back_to_source_bps": 10}}))
    plane.apply(config(rate_limits={"cluster": {"back_to_source_bps": 10}}, blocklist=[RULE]))
    plane.apply(config())
    assert heard == [None, 10, None]


def test_check_names_the_rule_in_one_line() -> None:
    plane = ControlPlane(config(blocklist=[RULE]))
    with pytest.raises(BlockedError) as raised:
        plane.check(BlockQuery(url="hf://org/model@main/a.bin"), shown="hf://org/model")
    assert (
        str(raised.value)
        == "hf://org/model is blocked by rule 12 (CVE-2026-1234, until 2099-12-31)"
    )
    plane.check(BlockQuery(url="hf://org/other"))  # allowed


class CountingRunner:
    def __init__(self) -> None:
        self.runs = 0

    async def run(self, request: DownloadRequest, observer: Any) -> RunResult:
        self.runs += 1
        return RunResult(files=1, bytes=0, source_bytes=0, peer_bytes=0)


async def test_the_guarded_runner_refuses_before_running() -> None:
    inner = CountingRunner()
    runner = GuardedRunner(inner, ControlPlane(config(blocklist=[RULE])), RequestPacer())
    with pytest.raises(BlockedError):
        await runner.run(DownloadRequest(url="hf://org/model", output="/tmp/x"), NullObserver())
    assert inner.runs == 0
    await runner.run(DownloadRequest(url="hf://org/fine", output="/tmp/x"), NullObserver())
    assert inner.runs == 1


async def test_the_pacer_spaces_request_starts() -> None:
    pacer = RequestPacer(rate=20.0)
    started = time.monotonic()
    for _ in range(4):
        await pacer.wait_turn()
    assert time.monotonic() - started >= 3 / 20 * 0.9


class Chunks:
    async def get(self, url: Any, byte_range: Any, options: Any) -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 32 * 1024


async def test_origin_reads_take_as_long_as_the_live_rate_says() -> None:
    bucket = LiveBucket(512 * 1024)
    backend = ThrottledBackend(Chunks(), bucket)  # type: ignore[arg-type]
    started = time.monotonic()
    received = sum([len(c) async for c in backend.get(parse_url("http://h/f"), None, None)])  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert received == 256 * 1024
    assert elapsed >= (256 - 32) / 512 * 0.9  # the burst is 32 KiB at this rate
    bucket.set_rate(None)
    started = time.monotonic()
    [c async for c in backend.get(parse_url("http://h/f"), None, None)]  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.1


async def test_bodies_read_into_buffers_are_throttled_too() -> None:
    bucket = LiveBucket(512 * 1024)
    backend = ThrottledBackend(Chunks(), bucket)  # type: ignore[arg-type]
    buffer = memoryview(bytearray(1024 * 1024))  # one buffer larger than the whole body
    started = time.monotonic()
    async with open_body(backend, parse_url("http://h/f"), None, None) as body:  # type: ignore[arg-type]
        assert await body.read_into(buffer) == 256 * 1024
        assert await body.read_into(buffer) == 0
    assert time.monotonic() - started >= (256 - 32) / 512 * 0.9
    assert bytes(buffer[: 256 * 1024]) == b"x" * 256 * 1024


def test_the_token_comes_from_a_file_or_the_named_variable(tmp_path: Path) -> None:
    env = {"DAMSELFLY_MANAGER_TOKEN": "dfm_env"}
    assert read_token(ManagerLinkSettings(url="http://m"), env) == "dfm_env"
    (tmp_path / "token").write_text("dfm_file\n")
    settings = ManagerLinkSettings(url="http://m", token_file=str(tmp_path / "token"))
    (tmp_path / "token").chmod(0o644)
    with pytest.raises(ConfigError, match=r"token: refusing .* \(mode 0644; run chmod 600"):
        read_token(settings, env)  # readable by others: refused, as ssh refuses such a key
    (tmp_path / "token").chmod(0o600)
    assert read_token(settings, env) == "dfm_file"
    with pytest.raises(ConfigError, match="token_file"):
        read_token(ManagerLinkSettings(token_file=str(tmp_path / "none")), env)


class Refusal(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_a_blocked_registration_becomes_the_same_error_on_the_daemon() -> None:
    from damselfly.config.scheduler import SchedulerSettings
    from damselfly.scheduler.control import SchedulerControl

    control = SchedulerControl(SchedulerSettings(), env={})
    control.plane.apply(config(blocklist=[RULE]))
    task = TaskMeta(
        task_id="a" * 64, url="hf://org/model/a.bin", content_length=1, piece_length=4 * 1024 * 1024
    )
    with pytest.raises(BlockedError) as raised:
        control.admit(task)
    mapped = final_error(Refusal(grpc.StatusCode.PERMISSION_DENIED, str(raised.value)))
    assert isinstance(mapped, BlockedError)
    assert str(mapped).startswith("hf://org/model/a.bin is blocked by rule 12")
    other = final_error(Refusal(grpc.StatusCode.PERMISSION_DENIED, "role peer may not"))
    assert other is None  # an access refusal still fails over as before


async def test_the_daemon_applies_the_smaller_upload_limit_live(tmp_path: Path) -> None:
    from damselfly.config.daemon import DaemonSettings
    from damselfly.daemon.control.member import DaemonControl

    settings = DaemonSettings.model_validate({"upload": {"rate_limit": 1000}})
    async with DaemonControl(settings, {}, tmp_path) as control:
        assert control.link is None  # no manager configured: nothing polls
        rates: list[float | None] = []
        control.watch_upload(rates.append)
        control.plane.apply(config(rate_limits={"cluster": {"upload_bps": 500}}))
        control.plane.apply(config(rate_limits={"cluster": {"upload_bps": 5000}}))
        control.plane.apply(config(rate_limits={"cluster": {"back_to_source_bps": 64}}))
        assert rates == [1000, 500, 1000, 1000]
        assert control.origin_bucket.rate == 64


def test_a_preheat_job_becomes_the_request_dfget_would_send(tmp_path: Path) -> None:
    from damselfly.daemon.control.preheat import request_for
    from damselfly.protocol.manager import PreheatJob

    job = PreheatJob.model_validate(
        {
            "id": 1,
            "kind": "repo",
            "url": "hf://o/r",
            "revision": "v1",
            "include": ["*.json"],
            "state": "running",
            "created_by": "ops",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
    )
    request = request_for(job, tmp_path, {})
    assert (request.url, request.recursive, request.include) == ("hf://o/r", True, ("*.json",))
    assert request.source is not None
    assert request.source.model_dump()["revision"] == "v1"
