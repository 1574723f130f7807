"""hf:// without the hub: listings and stats from an imported manifest in the mesh.

``HubFallbackRegistry`` wraps the daemon's per-request registry; its hf:// backend asks the
hub first, as always. Only when the hub cannot be reached (``SourceUnreachableError``,
``SourceTimeoutError``) does it look for a manifest some node published with ``dfctl
import`` (``MeshManifests.find``) and answer ``list``, ``stat`` and ``resolve_revision`` from
it, with exactly the values the hub would have given, so the download computes the imported
tasks' ids and gets their pieces from peers; the rest of the request (the backend lives as
long as one request) then skips the hub. No manifest: the hub's error stands. Reads
(``get``) always go to the hub: a task no peer holds cannot come from anywhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from damselfly.backends.base import Backend, Entry, ObjectStat, RequestOptions
from damselfly.backends.hf_api import DEFAULT_REVISION
from damselfly.backends.hf_manifest import RepoManifest, manifest_entries, manifest_stat
from damselfly.backends.registry import BackendRegistry, WrappingRegistry
from damselfly.core.errors import SourceTimeoutError, SourceUnreachableError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.daemon.imports.manifests import MeshManifests

T = TypeVar("T")


class HubFallbackBackend:
    def __init__(self, hub: Backend, manifests: MeshManifests) -> None:
        self._hub = hub
        self._manifests = manifests
        # set once the hub could not be reached: backends live as long as one request, so a
        # recursive download waits for one connect timeout, not one per file
        self._hub_down: SourceUnreachableError | SourceTimeoutError | None = None

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        return await self._either(lambda: self._hub.stat(url, options), url, options, manifest_stat)

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return await self._hub.exists(url, options)

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        return await self._either(
            lambda: self._hub.list(url, options), url, options, manifest_entries
        )

    def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        return self._hub.get(url, byte_range, options)

    async def resolve_revision(self, url: SourceUrl, options: RequestOptions) -> str:
        resolve: Callable[[SourceUrl, RequestOptions], Awaitable[str]]
        resolve = self._hub.resolve_revision  # type: ignore[attr-defined]
        return await self._either(
            lambda: resolve(url, options), url, options, lambda m, _url: m.commit
        )

    async def aclose(self) -> None:
        await self._hub.aclose()

    def __getattr__(self, name: str) -> object:
        return getattr(self._hub, name)

    async def _either(
        self,
        from_hub: Callable[[], Awaitable[T]],
        url: SourceUrl,
        options: RequestOptions,
        from_manifest: Callable[[RepoManifest, HubUrl], T],
    ) -> T:
        if self._hub_down is None:
            try:
                return await from_hub()
            except (SourceUnreachableError, SourceTimeoutError) as exc:
                if not isinstance(url, HubUrl):
                    raise
                self._hub_down = exc  # the rest of this request skips the hub
        assert isinstance(url, HubUrl)
        revision = options.param("hf_revision") or DEFAULT_REVISION
        manifest = await self._manifests.find(url, revision)
        if manifest is None:
            raise self._hub_down
        return from_manifest(manifest, url)


class HubFallbackRegistry(WrappingRegistry):
    """The same registry, its hf:// backend falling back to imported manifests."""

    def __init__(self, inner: BackendRegistry, manifests: MeshManifests) -> None:
        def wrap(url: SourceUrl, backend: Backend) -> Backend:
            return HubFallbackBackend(backend, manifests) if url.scheme == "hf" else backend

        super().__init__(inner, wrap)
