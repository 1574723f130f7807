"""The one place the scheduler is wired: settings -> state -> gRPC server + metrics server.

``serve(settings, stop=..., on_ready=...)`` runs until ``stop`` is set:

1. build the sans-IO ``SchedulerState`` from the settings;
2. start the gRPC server on ``settings.listen`` (mTLS with the cluster CA when ``settings.tls``
   is on, every RPC checked against the caller's role; else plain text, with a warning) and
   the HTTP server (``/metrics``, ``/healthz``) on ``settings.metrics_listen`` (port 0 picks
   a free port; the bound addresses go to ``on_ready``);
3. run the periodic host expiry in a ``TaskGroup`` until ``stop``;
4. stop: end the seed-job streams, give running calls ``shutdown_grace`` seconds, close the
   HTTP server. Nothing outlives ``serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from damselfly.config.base import split_host_port
from damselfly.config.scheduler import SchedulerSettings
from damselfly.config.security import PLAINTEXT_WARNING
from damselfly.core.error_groups import group_error
from damselfly.core.errors import SchedulerError
from damselfly.protocol import scheduler_pb2_grpc
from damselfly.scheduler.admission import AdmissionLimits
from damselfly.scheduler.control import SchedulerControl
from damselfly.scheduler.evaluator import ScoreWeights
from damselfly.scheduler.metrics import http_app
from damselfly.scheduler.resources import Clock
from damselfly.scheduler.service import SchedulerService
from damselfly.scheduler.state import SchedulerState, SchedulingLimits
from damselfly.security.files import node_files_from
from damselfly.security.grants import issue_grant
from damselfly.security.node_tls import NodeTls
from damselfly.security.renewal import RenewalLoop
from damselfly.security.roles import Role, caller_of_pem
from damselfly.security.tls import ReloadingFiles, grpc_server_credentials
from damselfly.transport.http_listener import listening

log = logging.getLogger(__name__)

# grpcio-tools generates untyped code: bind the one function used to a typed name, once.
_add_servicer: Callable[[SchedulerService, Any], None] = (
    scheduler_pb2_grpc.add_SchedulerServicer_to_server
)


@dataclass(frozen=True)
class RunningScheduler:
    """What ``on_ready`` receives: the bound addresses and the live state (for tests)."""

    grpc_address: str
    metrics_address: str
    state: SchedulerState


def limits_from(settings: SchedulerSettings) -> SchedulingLimits:
    weights = ScoreWeights(**settings.weights.model_dump())
    return SchedulingLimits(
        max_parents=settings.max_parents,
        host_ttl=settings.host_ttl,
        bad_parent_ttl=settings.bad_parent_ttl,
        failure_half_life=settings.failure_half_life,
        reader_timeout=settings.reader_timeout,
        reader_children=settings.reader_children,
        restart_grace=settings.restart_grace,
        digest_page_size=settings.digest_page_size,
        weights=weights,
    )


def admission_from(settings: SchedulerSettings) -> AdmissionLimits:
    return AdmissionLimits(**settings.caps.model_dump())


async def serve(
    settings: SchedulerSettings,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[RunningScheduler], None] | None = None,
    clock: Clock = time.monotonic,
) -> None:
    state = SchedulerState(limits_from(settings), clock=clock)
    control = SchedulerControl(settings)
    service = SchedulerService(
        state,
        tls=settings.tls.enabled,
        admission=admission_from(settings),
        grant_signer=_grant_signer(settings),
        admit=control.admit,
    )
    async with (
        _grpc_server(settings, service) as grpc_address,
        _http_server(settings, service, lambda: not stop.is_set()) as metrics_address,
    ):
        log.info("serving gRPC on %s, metrics on http://%s", grpc_address, metrics_address)
        if on_ready is not None:
            on_ready(RunningScheduler(grpc_address, metrics_address, state))
        try:
            async with asyncio.TaskGroup() as tasks:
                loops = [tasks.create_task(_expire_hosts(state, settings.expiry_interval))]
                loops.append(tasks.create_task(control.run(grpc_address)))
                renewal = _renewal_loop(settings)
                if renewal is not None:
                    loops.append(tasks.create_task(renewal.run()))
                await stop.wait()
                for loop in loops:
                    loop.cancel()
        except BaseExceptionGroup as errors:
            raise group_error(errors) from None
        log.info("stopping")


def _grant_signer(settings: SchedulerSettings) -> Callable[[str, str], str] | None:
    """Grants for private tasks are signed with the scheduler's (current) key."""
    if not settings.tls.enabled:
        return None
    source = ReloadingFiles(node_files_from(settings.tls))
    return lambda task_id, host_id: issue_grant(source.material(), task_id, host_id)


def _renewal_loop(settings: SchedulerSettings) -> RenewalLoop | None:
    """The certificate's renewal, when it came from ``damselfly enroll``."""
    if not settings.tls.enabled:
        return None
    return NodeTls.from_settings(settings.tls, expect={Role.SCHEDULER}).renewal_loop()


async def _expire_hosts(state: SchedulerState, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        state.expire_hosts()


def _render(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.asynccontextmanager
async def _grpc_server(
    settings: SchedulerSettings, service: SchedulerService
) -> AsyncIterator[str]:
    length = settings.max_message_length
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", length),
        ("grpc.max_send_message_length", length),
        ("grpc.keepalive_time_ms", 30_000),  # notice dead seed streams
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.so_reuseport", 0),  # a second scheduler on the same port fails loudly
    ]
    server = grpc.aio.server(options=options)
    _add_servicer(service, server)
    host, _ = split_host_port(settings.listen)
    try:
        port = _add_port(server, settings)
    except RuntimeError as exc:
        raise SchedulerError(f"cannot listen on {settings.listen}: {exc}") from exc
    await server.start()
    try:
        yield _render(host, port)
    finally:
        service.close()
        await server.stop(settings.shutdown_grace)


def _add_port(server: Any, settings: SchedulerSettings) -> int:
    if not settings.tls.enabled:
        log.warning("%s (gRPC on %s)", PLAINTEXT_WARNING, settings.listen)
        port: int = server.add_insecure_port(settings.listen)
        return port
    source = ReloadingFiles(node_files_from(settings.tls))
    role = caller_of_pem(source.material().cert_pem).role
    if role is not Role.SCHEDULER:
        raise SchedulerError(f"{source.files.cert_file}: a {role} certificate, not a scheduler's")
    port = server.add_secure_port(settings.listen, grpc_server_credentials(source))
    log.info("gRPC over mTLS (cluster CA %s)", settings.tls.paths()[0])
    return port


@contextlib.asynccontextmanager
async def _http_server(
    settings: SchedulerSettings, service: SchedulerService, is_serving: Callable[[], bool]
) -> AsyncIterator[str]:
    app = http_app(
        service.state,
        is_serving,
        lambda: service.access.refusals,
        lambda: service.admission.refused,
    )
    async with listening(app, settings.metrics_listen, setting="metrics_listen") as address:
        yield address
