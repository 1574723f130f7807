"""The injector's HTTPS skin over ``mutation.review``: ``POST /mutate``, ``/healthz``, ``/metrics``.

The API server only calls webhooks over HTTPS, so TLS is not optional: the certificate and
key are files (a Kubernetes Secret of type ``kubernetes.io/tls`` mounted as a directory),
read once at start. A body that is not JSON is answered like any malformed review: 200 with
an allowed response and a message, never a 500 (see ``mutation.py`` for why).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from damselfly.config.injector import InjectionPolicy, InjectorSettings
from damselfly.core.errors import ConfigError
from damselfly.injector.mutation import Outcome, Verdict, review
from damselfly.transport.http_listener import listening

log = logging.getLogger("damselfly.injector")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REVIEW_LENGTH = 3 * 1024 * 1024  # bytes; the API server caps objects at ~1.5 MiB


@dataclass
class InjectorMetrics:
    registry: CollectorRegistry
    reviews: Counter
    failures: Counter

    @classmethod
    def create(cls) -> InjectorMetrics:
        registry = CollectorRegistry(auto_describe=True)
        reviews = Counter(
            "damselfly_injector_reviews",
            "Admission reviews answered, by outcome.",
            ["outcome"],
            registry=registry,
        )
        failures = Counter(
            "damselfly_injector_failures",
            "Pods that could not be injected, by what was done (admitted or refused).",
            ["action"],
            registry=registry,
        )
        for outcome in Outcome:
            reviews.labels(outcome.value)
        for action in ("admitted", "refused"):
            failures.labels(action)
        return cls(registry, reviews, failures)

    def record(self, verdict: Verdict) -> None:
        self.reviews.labels(verdict.outcome.value).inc()
        if verdict.outcome is Outcome.FAILED:
            admitted = verdict.response["response"]["allowed"]
            self.failures.labels("admitted" if admitted else "refused").inc()


def http_app(policy: InjectionPolicy, metrics: InjectorMetrics) -> web.Application:
    async def mutate(request: web.Request) -> web.Response:
        verdict = review(await _json_body(request), policy)
        metrics.record(verdict)
        _log_event(verdict)
        return web.json_response(verdict.response)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=MAX_REVIEW_LENGTH)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    return app


async def _json_body(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None  # answered as a malformed review


def _log_event(verdict: Verdict) -> None:
    """One line per notable review, shaped like a Kubernetes Event (reason, object, message)."""
    if verdict.outcome is Outcome.INJECTED:
        log.info("event reason=Injected pod=%s/%s", verdict.namespace, verdict.pod)
    elif verdict.outcome is Outcome.FAILED:
        log.warning(
            "event reason=InjectionFailed pod=%s/%s message=%s",
            verdict.namespace,
            verdict.pod,
            verdict.message,
        )
    elif verdict.outcome is Outcome.MALFORMED:
        log.warning("event reason=MalformedReview message=%s", verdict.message)


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    if not cert_file or not key_file:
        raise ConfigError(
            "injector: tls_cert and tls_key are required (the API server needs HTTPS)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"injector: cannot load TLS certificate {cert_file}: {exc}") from exc
    return context


async def serve(
    settings: InjectorSettings,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] = lambda address: None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the bound ``host:port``."""
    context = server_ssl_context(settings.tls_cert, settings.tls_key)
    app = http_app(settings.policy, InjectorMetrics.create())
    async with listening(app, settings.listen, setting="listen", ssl_context=context) as address:
        on_ready(address)
        await stop.wait()
