"""Offline, the piece store answers for files the Hugging Face cache lacks.

A snapshot can miss files the commit's cached listing (``trees/<commit>.json``) names: an
interrupted download, a blob pruned from the cache, a cache emptied while the piece store
kept its tasks. Without the hub, each such file is looked up in the piece store by what the
listing vouches for (sha256 for LFS files, git blob id otherwise, and the length): a complete
task with that digest is delivered into ``blobs/<etag>`` (every piece re-hashed on the way,
``Store.deliver``) and linked into the snapshot, as a download would have. Nothing is sent
anywhere; a store that does not exist is not created.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from damselfly.backends.base import Entry
from damselfly.core.errors import DamselflyError
from damselfly.download.hub_layouts import HfCacheLayout
from damselfly.download.hub_trees import listed_entries
from damselfly.storage.metadata import TaskState
from damselfly.storage.store import Store

log = logging.getLogger("damselfly.api")


def restore_from_store(
    store_root: Path, layout: HfCacheLayout, commit: str, paths: Sequence[str]
) -> list[str]:
    """Put ``paths`` (repo paths at ``commit``) into ``layout``'s cache from the piece store
    where it holds them; returns the paths it could not."""
    wanted = set(paths)
    listed = listed_entries(layout.repo_dir, layout.repo_url, commit)
    entries = [e for e in listed if e.path in wanted]
    if not entries or not (store_root / "metadata.db").exists():
        return sorted(wanted)
    restored = []
    with Store(store_root) as store:
        held: dict[tuple[str, int | None], str] = {
            (t.content_digest, t.content_length): t.task_id
            for t in store.list_tasks()
            if t.state is TaskState.SUCCEEDED and t.content_digest
        }
        for entry in entries:
            task_id = held.get((str(entry.content_digest), entry.content_length))
            if task_id is not None and _delivered(store, layout, entry, task_id):
                restored.append(entry)
    layout.finish(restored)
    if restored:
        log.warning("damselfly: %d file(s) restored from the piece store", len(restored))
    return sorted(wanted - {e.path for e in restored})


def _delivered(store: Store, layout: HfCacheLayout, entry: Entry, task_id: str) -> bool:
    try:
        blob = layout.output_for(entry)
        if blob is not None:
            store.deliver(task_id, blob, overwrite=True)
    except DamselflyError as error:
        log.warning("damselfly: %s not restored from the piece store: %s", entry.path, error)
        return False
    return True
