"""dfget and ``damselfly download`` without the hub: offline mode and an unreachable hub.

``HF_HUB_OFFLINE=1`` (hf://) or ``MODELSCOPE_OFFLINE=1`` (modelscope://; the modelscope SDK
has no such variable, only ``local_files_only=True``) answer from what the local caches hold,
without a request; a hub that cannot be reached does the same after the attempt failed, with
one warning line. The lookup is huggingface_hub's (``api/offline.py``): ``refs/<revision>``
names the commit, ``snapshots/<commit>[/<path>]`` must exist; a ``-O dir`` of a recursive hf://
download (huggingface_hub's local dir) must exist and not be empty. The answer is what the
download would have printed (the cache path) and no bytes moved. A snapshot that the cached
listing (``trees/<commit>.json``) shows incomplete for what ``-r`` selects is an error, unless
the standalone piece store (``--storage-dir``) still holds the missing files: they are put
back (``download/hub_restore.py``).

Only ``run_or_cached`` and the environment check are imported up front: a hub file handed to
the daemon never looks at a cache, and the lookup's modules (hub layouts, the download
pipeline) were ~40 ms of every such dfget (issue 15: small files); the lookup imports them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from damselfly.config.hub_env import hub_offline, modelscope_offline
from damselfly.core.errors import (
    DamselflyError,
    SourceTimeoutError,
    SourceUnreachableError,
    shorten,
)
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.protocol.local_api import RunResult

if TYPE_CHECKING:
    from damselfly.api.offline import Restorer
    from damselfly.download.hub_layouts import HfCacheLayout
    from damselfly.download.request import DownloadRequest

_HUB_DOWN_WORDS = ("unreachable", "did not answer")


class OfflineCacheMissError(DamselflyError, FileNotFoundError):
    """Offline, and the local caches do not hold what was asked for."""


def offline_requested(request: DownloadRequest, env: Mapping[str, str]) -> str | None:
    """The setting that turns the hub off for this request, if one is set."""
    return _offline_setting(request.source_url, env)


def _offline_setting(url: SourceUrl, env: Mapping[str, str]) -> str | None:
    scheme = url.scheme if isinstance(url, HubUrl) else ""  # a hub's options go with its scheme
    if scheme == "hf" and hub_offline(env):
        return "HF_HUB_OFFLINE"
    if scheme == "modelscope" and modelscope_offline(env):
        return "MODELSCOPE_OFFLINE"
    return None


def cached_location(request: DownloadRequest, store_root: Path | None = None) -> str | None:
    """Where the caches already hold what ``request`` asks for (``None``: they do not); files
    the HF cache lost are asked of the piece store at ``store_root`` (``hub_restore.py``)."""
    from damselfly.api.offline import cached_file, cached_snapshot
    from damselfly.backends.hf_options import HfOptions
    from damselfly.backends.modelscope_options import ModelScopeOptions
    from damselfly.download.hub_layouts import (
        HfCacheLayout,
        HfLocalDirLayout,
        ModelScopeCacheLayout,
    )
    from damselfly.download.request_jobs import build_hub_layout

    url = request.source_url
    if not isinstance(url, HubUrl):
        return None
    layout = build_hub_layout(request)
    source = request.resolved_source
    revision = source.revision if isinstance(source, HfOptions | ModelScopeOptions) else ""
    if isinstance(layout, HfCacheLayout):
        restore = _restorer(layout, store_root)
        if url.path and not request.recursive:
            return cached_file(layout.repo_dir, revision, url.path, None, restore)
        selection = (request.include, request.exclude)
        found = cached_snapshot(layout.repo_dir, revision, None, selection, url.path, restore)
        return f"{found}/{url.path}" if found and url.path else found
    if isinstance(layout, HfLocalDirLayout):
        selection = (request.include, request.exclude)
        return cached_snapshot(layout.root, revision, layout.root, selection, url.path)
    if isinstance(layout, ModelScopeCacheLayout):
        where = layout.location(url.path)
        return str(where) if where is not None and where.exists() else None
    if request.output and Path(request.output).exists():
        return request.output
    return None


def _restorer(layout: HfCacheLayout, store_root: Path | None) -> Restorer | None:
    if store_root is None:
        return None

    def restore(commit: str, paths: list[str]) -> list[str]:
        # the piece store, only when offline (dfget's start-up time does not pay for it)
        from damselfly.download.hub_restore import restore_from_store

        return restore_from_store(store_root, layout, commit, paths)

    return restore


def run_or_cached(
    prog: str,
    request: DownloadRequest,
    env: Mapping[str, str],
    run: Callable[[], RunResult],
    store_root: Path | None = None,
) -> RunResult:
    """``run()``, or the caches' answer when the hub is off or unreachable (module doc)."""
    return run_or_cached_lazily(prog, request.source_url, lambda: request, env, run, store_root)


def run_or_cached_lazily(
    prog: str,
    url: SourceUrl,
    request: Callable[[], DownloadRequest],
    env: Mapping[str, str],
    run: Callable[[], RunResult],
    store_root: Path | None = None,
) -> RunResult:
    """``run_or_cached`` for a request built by ``request()`` only if a cache must answer."""
    if not isinstance(url, HubUrl):
        return run()  # only the hubs have caches to answer from
    setting = _offline_setting(url, env)
    if setting is not None:
        return _from_cache(prog, request(), f"{setting} is set", store_root, warn=False)
    try:
        return run()
    except (SourceUnreachableError, SourceTimeoutError) as error:
        return _from_cache(prog, request(), str(error), store_root, warn=True, cause=error)
    except DamselflyError as error:  # a daemon's failure arrives as its message
        if not any(word in str(error) for word in _HUB_DOWN_WORDS):
            raise
        return _from_cache(prog, request(), str(error), store_root, warn=True, cause=error)


def _from_cache(
    prog: str,
    request: DownloadRequest,
    why: str,
    store_root: Path | None,
    *,
    warn: bool,
    cause: BaseException | None = None,
) -> RunResult:
    found = cached_location(request, store_root)
    if found is None:
        message = f"{shorten(request.redacted_url())}: not in the local cache, and {shorten(why)}"
        raise OfflineCacheMissError(message) from cause
    if warn:
        print(f"{prog}: warning: {why}; using the cached copy", file=sys.stderr)
    announce = request.resolved_source is not None and request.resolved_source.cache_requested
    return RunResult(
        files=0, bytes=0, source_bytes=0, peer_bytes=0, reused_bytes=0,
        stdout=f"{found}\n" if announce else "",
    )  # fmt: skip
