"""What the local API hands a download request to: ``StoreRunner`` (a ``DownloadRunner`` as
``servers/local_api.py`` defines it).

``StoreRunner`` runs a request with the download layer (``download/request_jobs.run_request``)
on the daemon's store: list (for ``-r``), fill every file's pieces with the given
``PieceFiller`` (``SourceFiller`` by default: the origin; the P2P engine passes its
``PeerFiller``), verify, and deliver to the output or a hub cache layout. Delivery runs in the
daemon, so the local API only accepts callers running as the daemon's own user (or root): the
daemon never writes where its caller could not.

Each run gets its own backend registry (its retry settings come from the request), closed when
the run ends, also when it is cancelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from damselfly.backends.registry import BackendRegistry, BackendSettings, default_registry
from damselfly.core.errors import UsageError
from damselfly.download.events import DownloadObserver
from damselfly.download.jobs import DownloadContext, PieceFiller, SourceFiller
from damselfly.download.public_files import PublicFiles
from damselfly.download.request import DownloadRequest
from damselfly.download.request_jobs import backend_settings, fetch_policy, run_request
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.protocol.local_api import RunResult
from damselfly.storage.store import Store

RegistryFactory = Callable[[BackendSettings], BackendRegistry]


class StoreRunner:
    def __init__(
        self,
        store: Store,
        registry_factory: RegistryFactory = default_registry,
        filler: PieceFiller | None = None,
        source_concurrency: int | None = None,
        private_task_key: bytes | None = None,
        public_files: PublicFiles | None = None,
    ) -> None:
        self._store = store
        self._public_files = public_files  # which files asked with a token are public
        self._private_task_key = private_task_key  # the cluster's key for private task ids
        self._registry_factory = registry_factory
        self._filler = filler
        self._source_concurrency = source_concurrency  # None: each request's --concurrent-pieces

    @property
    def registry_factory(self) -> RegistryFactory:
        return self._registry_factory

    @property
    def private_task_key(self) -> bytes | None:
        return self._private_task_key

    @property
    def public_files(self) -> PublicFiles | None:
        return self._public_files

    async def run(self, request: DownloadRequest, observer: DownloadObserver) -> RunResult:
        if self._filler is None and not request.back_to_source:
            raise UsageError(
                "--disable-back-to-source: this dfdaemon reads only from origins (no P2P engine)"
            )
        registry = self._registry_factory(backend_settings(request))
        ctx = DownloadContext(
            store=self._store,
            registry=registry,
            observer=observer,
            policy=self._policy(request),
            filler=self._filler or SourceFiller(),
            private_task_key=self._private_task_key,
            public_files=self._public_files,
        )
        try:
            return await run_request(request, ctx)
        finally:
            await registry.aclose()

    def _policy(self, request: DownloadRequest) -> FetchPolicy:
        policy = fetch_policy(request)
        if self._source_concurrency is None:
            return policy
        return dataclasses.replace(policy, concurrency=self._source_concurrency)
