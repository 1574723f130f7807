"""Repo manifests in the mesh (``backends/hf_manifest.py`` says what they hold).

``publish`` stores a manifest and its pointers (one per name the revision goes by: the
revision asked for and the commit) as ordinary tasks of this daemon's store, filled from
memory; the importer then announces them with the imported files. ``find`` fetches the
pointer of (repo, revision) and then the manifest from peers through the daemon's
``PieceFiller``, never from an origin (there is none), and remembers the answer for
``memo_seconds``. No seed is ever sent for them (``FileJob.seedable``): there is no origin,
so a node that finds no holder fails at once. Both are plain downloads: pieces are verified
against the digests the scheduler relays from the publishing node, the manifest against its
sha256.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from damselfly.backends.base import Entry, ObjectStat, RequestOptions
from damselfly.backends.hf_manifest import (
    MANIFEST_PATH,
    POINTER_LENGTH,
    RepoManifest,
    parse_manifest,
    parse_pointer,
    pointer_bytes,
    pointer_identity,
)
from damselfly.backends.registry import BackendRegistry
from damselfly.core.digests import Digest
from damselfly.core.errors import DamselflyError, SourceUnreachableError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.download.events import NullObserver
from damselfly.download.file_download import fill_file
from damselfly.download.jobs import DownloadContext, FileJob, PieceFiller, SourceFiller
from damselfly.storage.store import Store

log = logging.getLogger(__name__)

FIND_TIMEOUT = 30.0  # seconds to get a pointer and its manifest from peers
MEMO_SECONDS = 60.0


@dataclass(frozen=True)
class _Known:
    """What is known of one small object before it is fetched: its bytes (when publishing),
    else only its length and digest (when fetching from peers)."""

    length: int
    digest: Digest | None
    data: bytes | None = None


class _KnownBackend:
    """The 'origin' of a pointer or manifest task: memory when publishing; when fetching,
    only its length and digest (so the task id can be computed) and no bytes."""

    def __init__(self, known: _Known) -> None:
        self._known = known

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        return ObjectStat(self._known.length, True, content_digest=self._known.digest)

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return True

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        raise SourceUnreachableError(url.redacted(), "a manifest is no folder")

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        data = self._known.data
        if data is None:
            raise SourceUnreachableError(url.redacted(), "no peer holds the imported manifest")
        yield data if byte_range is None else data[byte_range.start : byte_range.end]

    async def aclose(self) -> None:
        return None


class MeshManifests:
    def __init__(
        self, store: Store, filler: PieceFiller, *, memo_seconds: float = MEMO_SECONDS
    ) -> None:
        self._store = store
        self._filler = filler
        self._memo_seconds = memo_seconds
        self._memo: dict[tuple[str, str], tuple[float, RepoManifest]] = {}

    async def publish(self, manifest: RepoManifest) -> list[str]:
        """Store the manifest and its pointers here; returns their task ids."""
        data = manifest.to_bytes()
        digest = Digest("sha256", manifest.sha256)
        known = _Known(len(data), digest, data)
        task_ids = [await self._fill(manifest.repo, known, None, filler=SourceFiller())]
        pointer = _Known(POINTER_LENGTH, None, pointer_bytes(manifest.sha256, len(data)))
        for name in dict.fromkeys([manifest.revision, manifest.commit]):
            identity = pointer_identity(manifest.repo, name)
            task_ids.append(
                await self._fill(manifest.repo, pointer, identity, filler=SourceFiller())
            )
            self._remember(manifest.repo, name, manifest)
        return task_ids

    async def find(self, repo: HubUrl, revision: str) -> RepoManifest | None:
        """The manifest some peer published for ``repo`` at ``revision``, or None."""
        repo = repo.with_path("")
        held = self._memo.get((str(repo), revision))
        if held is not None and held[0] > time.monotonic():
            return held[1]
        try:
            async with asyncio.timeout(FIND_TIMEOUT):
                manifest = await self._fetch(repo, revision)
        except (DamselflyError, TimeoutError) as exc:
            log.info("%s@%s: no imported manifest in the mesh (%s)", repo, revision, exc)
            return None
        self._remember(repo, revision, manifest)
        self._remember(repo, manifest.commit, manifest)
        return manifest

    async def _fetch(self, repo: HubUrl, revision: str) -> RepoManifest:
        pointer_known = _Known(POINTER_LENGTH, None)
        pointer_task = await self._fill(repo, pointer_known, pointer_identity(repo, revision))
        sha256, length = parse_pointer(self._read(pointer_task, POINTER_LENGTH), repo)
        manifest_task = await self._fill(repo, _Known(length, Digest("sha256", sha256)), None)
        return parse_manifest(self._read(manifest_task, length), repo)

    async def _fill(
        self,
        repo: HubUrl,
        known: _Known,
        identity: str | None,
        *,
        filler: PieceFiller | None = None,
    ) -> str:
        """Fill one small task (into the store only) and return its id. Publishing reads it
        from memory; fetching gets it from peers (``self._filler``)."""
        registry = BackendRegistry({"hf": lambda: _KnownBackend(known)})
        ctx = DownloadContext(self._store, registry, NullObserver(),
                              filler=filler or self._filler)  # fmt: skip
        url = repo.with_path(MANIFEST_PATH)
        job = FileJob(url, Path(MANIFEST_PATH), identity_text=identity, seedable=False)
        try:
            return (await fill_file(job, ctx)).task_id
        finally:
            await registry.aclose()

    def _read(self, task_id: str, length: int) -> bytes:
        with self._store.content_path(task_id).open("rb") as handle:
            return handle.read(length)

    def _remember(self, repo: HubUrl, revision: str, manifest: RepoManifest) -> None:
        expiry = time.monotonic() + self._memo_seconds
        self._memo[(str(repo.with_path("")), revision)] = (expiry, manifest)
