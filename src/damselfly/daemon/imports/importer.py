"""``RepoImporter``: a local copy of a hub repo into this daemon's store, then into the mesh.

``import_repo(path, repo, revision)``:

0. the blocklist (a blocked repo is refused, as its download would be);
1. ``manifest_from_directory`` (a worker thread: every file is hashed);
2. every file filled into the store through the ordinary download path, its origin being the
   copy (``StagedHfBackend``): the task ids are those a hub download computes;
3. the manifest and its pointers published (``MeshManifests.publish``);
4. all these tasks marked as read from their origin here, and announced at once, so the
   scheduler gets their piece digests and hands this node to peers as their parent.

Nothing is asked of the scheduler while filling: a seed must not be sent to a hub this site
may not reach.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from damselfly.backends.hf_manifest import MANIFEST_PATH
from damselfly.backends.hf_staging import StagedHfBackend, manifest_from_directory
from damselfly.backends.registry import BackendRegistry
from damselfly.core.errors import DamselflyError
from damselfly.core.urls import HubUrl
from damselfly.daemon.imports.manifests import MeshManifests
from damselfly.download.events import NullObserver
from damselfly.download.file_download import fill_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.tree_download import entry_job
from damselfly.storage.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    repo: str
    revision: str
    commit: str
    commit_is_stand_in: bool
    files: int
    bytes: int
    task_ids: list[str]


class RepoImporter:
    def __init__(
        self,
        store: Store,
        manifests: MeshManifests,
        origin_reader_tasks: set[str],
        announce: Callable[[], Awaitable[None]],
        check: Callable[[str], None] = lambda url: None,
    ) -> None:
        self._check = check  # the blocklist: a blocked repo is not imported either
        self._store = store
        self._manifests = manifests
        self._origin_readers = origin_reader_tasks
        self._announce = announce

    async def import_repo(self, root: Path, repo: HubUrl, revision: str) -> ImportResult:
        self._check(str(repo.with_path("")))
        manifest, stand_in = await asyncio.to_thread(manifest_from_directory, root, repo, revision)
        registry = BackendRegistry({"hf": lambda: StagedHfBackend(manifest, root)})
        ctx = DownloadContext(self._store, registry, NullObserver())
        try:
            template = FileJob(manifest.repo, Path(MANIFEST_PATH))
            entries = await registry.for_url(manifest.repo).list(manifest.repo, template.options)
            task_ids = [
                (await fill_file(entry_job(template, e, Path(e.path)), ctx)).task_id
                for e in entries
            ]
        finally:
            await registry.aclose()
        task_ids += await self._manifests.publish(manifest)
        self._origin_readers.update(task_ids)
        await self._announce_now()
        size = sum(f.size for f in manifest.files)
        return ImportResult(str(manifest.repo), revision, manifest.commit, stand_in,
                            len(manifest.files), size, task_ids)  # fmt: skip

    async def _announce_now(self) -> None:
        try:
            await self._announce()
        except DamselflyError as exc:  # the announcer's own loop tries again
            log.warning("imported tasks not announced yet: %s", exc)
