"""``dry_run=True``: what a download would do, as huggingface_hub's ``DryRunFileInfo`` list.

The result type is huggingface_hub's own ``DryRunFileInfo`` when it is installed, else a
dataclass with the same fields. ``local_path`` is where the file is (or would be) found:
``snapshots/<commit>/<path>`` in the cache, ``<local_dir>/<path>`` with a local dir.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damselfly.backends.base import Entry
from damselfly.download.hub_layouts import HF_REVISION_PARAM, HfCacheLayout, HubLayout


@dataclass(frozen=True)
class DryRunFileInfo:
    """huggingface_hub's fields, for when it is not installed."""

    commit_hash: str
    file_size: int | None
    filename: str
    local_path: str
    is_cached: bool
    will_download: bool


def _info_class() -> Any:
    try:
        return importlib.import_module("huggingface_hub").DryRunFileInfo
    except (ImportError, AttributeError):
        return DryRunFileInfo


def dry_run_info(entry: Entry, repo_path: str, layout: HubLayout, force: bool) -> Any:
    """One file: ``layout`` is built without ``force`` so that it says what it holds."""
    commit = dict(entry.params).get(HF_REVISION_PARAM, "")
    if isinstance(layout, HfCacheLayout):
        local = layout.repo_dir / "snapshots" / commit / repo_path
        cached = local.exists()
    else:
        local = layout.root / repo_path
        cached = layout.output_for(entry) is None
    return _info_class()(
        commit_hash=commit,
        file_size=entry.content_length,
        filename=repo_path,
        local_path=str(Path(local)),
        is_cached=cached,
        will_download=force or not cached,
    )
