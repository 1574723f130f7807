"""A daemon says it is ready only once its scheduler knows it: at the moment ``on_ready`` runs,
the scheduler (served in the same event loop, so nothing can move in between) holds the host,
and a seed is among the seeds taking jobs. Before this, a ``dfget --disable-back-to-source``
started right after a seed's ready line could find no seed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from damselfly.config import daemon as daemon_config
from damselfly.config import scheduler as scheduler_config
from damselfly.daemon import loops
from damselfly.daemon.app import RunningDaemon
from damselfly.daemon.app import serve as serve_daemon
from damselfly.protocol.scheduler_pb2_grpc import SchedulerServicer, add_SchedulerServicer_to_server
from damselfly.scheduler.app import RunningScheduler
from damselfly.scheduler.app import serve as serve_scheduler
from damselfly.scheduler.state import SchedulerState
from damselfly.storage import space
from damselfly.transport import http_session


async def started(
    serve: Any, settings: Any, stop: asyncio.Event, *, also: Any = None, **kwargs: Any
) -> Any:
    """Run ``serve`` in a task; what it hands ``on_ready`` (also to ``also``), and the task."""
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_ready(running: Any) -> None:
        if also is not None:
            also(running)
        ready.set_result(running)

    task = asyncio.create_task(serve(settings, stop=stop, on_ready=on_ready, **kwargs))
    await asyncio.wait([ready, task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what serve() raised
    return ready.result(), task


@pytest.fixture
async def scheduler() -> AsyncIterator[RunningScheduler]:
    settings = scheduler_config.load(
        overrides={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "shutdown_grace": 1}
    )
    stop = asyncio.Event()
    running, task = await started(serve_scheduler, settings, stop)
    yield running
    stop.set()
    await asyncio.wait_for(task, 10)


def daemon_settings(tmp_path: Path, schedulers: list[str], *, seed: bool) -> Any:
    return daemon_config.load(
        env={},
        overrides={
            "schedulers": schedulers,
            "seed": seed,
            "storage_dir": str(tmp_path / "store"),
            "socket": str(tmp_path / "dfdaemon.sock"),
            "metrics_listen": "127.0.0.1:0",
            "upload": {"listen": "127.0.0.1:0"},
            "announce_interval": 30,  # only the first round can count
        },
    )


def known(state: SchedulerState, host_id: str) -> tuple[bool, bool]:
    """(the host is known, it is a seed taking jobs)"""
    hosts = state.resources.hosts
    return host_id in hosts, host_id in state.seeds.connected and hosts[host_id].is_seed


@pytest.mark.parametrize("seed", [True, False], ids=["seed", "peer"])
async def test_the_scheduler_knows_a_daemon_when_it_says_ready(
    tmp_path, monkeypatch, scheduler, seed
):
    monkeypatch.setattr(loops, "READY_WAIT", 60.0)  # the signals, not the bound, must end it
    seen: list[tuple[bool, bool]] = []

    def on_ready(running: RunningDaemon) -> None:
        seen.append(known(scheduler.state, running.host_id))

    stop = asyncio.Event()
    settings = daemon_settings(tmp_path, [scheduler.grpc_address], seed=seed)
    _, task = await started(serve_daemon, settings, stop, env={}, also=on_ready)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert seen == [(True, seed)]


class Silent(SchedulerServicer):
    """A scheduler that takes every call and never answers."""

    async def AnnounceHost(self, request: Any, context: Any) -> Any:
        await asyncio.Event().wait()

    async def WatchSeedJobs(self, request: Any, context: Any) -> Any:
        await asyncio.Event().wait()
        yield  # pragma: no cover


async def test_a_scheduler_that_never_answers_delays_ready_only_so_long(tmp_path, monkeypatch):
    monkeypatch.setattr(loops, "READY_WAIT", 0.5)
    server = grpc.aio.server()
    add_SchedulerServicer_to_server(Silent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        stop = asyncio.Event()
        settings = daemon_settings(tmp_path, [f"127.0.0.1:{port}"], seed=True)
        loop = asyncio.get_running_loop()
        begun = loop.time()
        running, task = await started(serve_daemon, settings, stop, env={})
        waited = loop.time() - begun
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        await server.stop(None)
    assert running.host_id
    assert 0.5 <= waited < 3.0  # held by the waits of 0.5 s, not the gRPC call's 5 s timeout


async def test_stop_during_the_ready_waits_ends_the_daemon_without_a_ready_line(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(loops, "READY_WAIT", 60.0)
    server = grpc.aio.server()
    add_SchedulerServicer_to_server(Silent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    readies: list[RunningDaemon] = []
    try:
        stop = asyncio.Event()
        settings = daemon_settings(tmp_path, [f"127.0.0.1:{port}"], seed=True)
        task = asyncio.create_task(
            serve_daemon(settings, stop=stop, env={}, on_ready=readies.append)
        )
        await asyncio.sleep(1.0)  # inside the first wait: the silent scheduler never answers
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)  # not the 60 s bound
    finally:
        await server.stop(None)
    assert readies == []


async def test_a_ready_daemon_has_done_the_first_downloads_preparations(
    tmp_path, monkeypatch, scheduler
):
    """The space reserve and the origin TLS context are made at start, not on the path of the
    first download (when a cluster starts, every daemon would make them at the same time)."""
    monkeypatch.setattr(http_session, "_CONTEXTS", {})
    prepared: list[tuple[bool, int]] = []

    def on_ready(running: RunningDaemon) -> None:
        reserve = tmp_path / "store" / space.RESERVE_NAME
        prepared.append((reserve.exists(), len(http_session._CONTEXTS)))

    stop = asyncio.Event()
    settings = daemon_settings(tmp_path, [scheduler.grpc_address], seed=False)
    _, task = await started(serve_daemon, settings, stop, env={}, also=on_ready)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert prepared == [(True, 1)]
