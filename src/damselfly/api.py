"""The Python API: huggingface_hub's download functions, served by damselfly's pipeline.

``snapshot_download`` and ``hf_hub_download`` take huggingface_hub's names and arguments and
return the paths it would return: by default a folder (or file) inside
``<cache>/<type>s--<owner>--<repo>/snapshots/<commit>/`` of the Hugging Face cache (so
``transformers`` and ``huggingface_hub`` with ``HF_HUB_OFFLINE=1`` load it unchanged), or, with
``local_dir``, the files below that directory (with huggingface_hub's ``.cache/huggingface``
metadata). Bytes go through the same piece store and checks as ``dfget``: every file verified
against the hub's sha256 or git blob id before it appears.

Settings are read when a function is called, never at import: endpoint ``endpoint`` else
``HF_ENDPOINT`` else https://huggingface.co; token ``token`` (``False``: send none) else
``HF_TOKEN`` else the token file under ``HF_HOME``; cache ``cache_dir`` else ``HF_HUB_CACHE``
else ``HF_HOME/hub`` else ``~/.cache/huggingface/hub``; piece store ``storage_dir`` else
dfget's (``DAMSELFLY_STORAGE_DIR``, else ``~/.cache/damselfly``; /var/lib/damselfly for root).

Both functions are synchronous. They run an event loop of their own; called where a loop is
already running (a notebook, an async server), they run it in a worker thread and block the
caller until done, as huggingface_hub's own functions block. Failures raise damselfly's typed
errors, which also subclass builtins (``SourceNotFoundError`` is a ``FileNotFoundError``,
``SourceAuthError`` a ``PermissionError``, ``InvalidUrlError`` a ``ValueError``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from damselfly.backends.base import RequestOptions
from damselfly.backends.hf import HfBackend
from damselfly.backends.hf_api import DEFAULT_REVISION, normalize_endpoint
from damselfly.backends.hf_options import HfOptions
from damselfly.backends.registry import BackendSettings, default_registry
from damselfly.config.paths import store_dir
from damselfly.core.errors import InvalidUrlError, UsageError
from damselfly.core.urls import HubUrl, parse_url
from damselfly.download.events import NullObserver
from damselfly.download.hub_layouts import (
    HfCacheLayout,
    HfLocalDirLayout,
    HubLayout,
    default_hf_cache_dir,
    download_hub_file,
)
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.tree_download import TreeJob, download_tree
from damselfly.storage.store import Store

T = TypeVar("T")
_REPO_TYPES = {None: "models", "model": "models", "dataset": "datasets", "space": "spaces"}


def snapshot_download(
    repo_id: str,
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    allow_patterns: str | Sequence[str] | None = None,
    ignore_patterns: str | Sequence[str] | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    max_workers: int = 8,
    storage_dir: str | Path | None = None,
) -> str:
    """Download a repository (all files, or those the patterns select); returns its folder."""
    repo = _HubRepo.build(repo_id, repo_type, revision, token, endpoint)
    layout = _layout(repo.url, repo.revision, cache_dir, local_dir)
    store_dir = _store_dir(storage_dir)
    job = TreeJob(
        template=repo.template(layout.root),
        include=_patterns(allow_patterns),
        exclude=_patterns(ignore_patterns),
        concurrent_files=max(1, max_workers),
        layout=layout,
    )

    async def run(ctx: DownloadContext) -> Path | None:
        await download_tree(job, ctx)
        if isinstance(layout, HfCacheLayout) and layout.commit is None:
            layout.adopt_commit(await _resolve_commit(ctx, repo))  # nothing matched
        return layout.location("")

    return _answer(_run_sync(lambda: _with_context(store_dir, run)), local_dir)


def hf_hub_download(
    repo_id: str,
    filename: str,
    *,
    subfolder: str | None = None,
    repo_type: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    storage_dir: str | Path | None = None,
) -> str:
    """Download one file of a repository; returns its path (inside the snapshot or local_dir)."""
    path = f"{subfolder}/{filename}" if subfolder else filename
    repo = _HubRepo.build(repo_id, repo_type, revision, token, endpoint)
    url = _file_url(repo.url, path)
    layout = _layout(repo.url, repo.revision, cache_dir, local_dir)
    template = repo.template(layout.root)
    store_dir = _store_dir(storage_dir)

    async def run(ctx: DownloadContext) -> Path | None:
        await download_hub_file(replace(template, url=url), layout, ctx)
        return layout.location(url.path)

    return _answer(_run_sync(lambda: _with_context(store_dir, run)), None)


@dataclass(frozen=True)
class _HubRepo:
    url: HubUrl  # the repo root
    revision: str
    options: RequestOptions = field(repr=False)

    @classmethod
    def build(
        cls,
        repo_id: str,
        repo_type: str | None,
        revision: str | None,
        token: str | bool | None,
        endpoint: str | None,
    ) -> _HubRepo:
        url = _repo_url(repo_id, repo_type)
        options = _hf_options(revision, token, endpoint, os.environ)
        params = RequestOptions(params=options.request_params(url))
        return cls(url, options.revision, params)

    def template(self, output: Path) -> FileJob:
        # The layout owns its files: a stale or partial one is replaced, never refused.
        return FileJob(url=self.url, output=output, options=self.options, overwrite=True)


def _repo_url(repo_id: str, repo_type: str | None) -> HubUrl:
    if repo_type not in _REPO_TYPES:
        raise InvalidUrlError(repo_id, "repo type", f"{repo_type!r} is not model, dataset, space")
    prefix = "" if _REPO_TYPES[repo_type] == "models" else f"{_REPO_TYPES[repo_type]}/"
    if repo_id.count("/") != 1:
        raise InvalidUrlError(repo_id, "repository", "expected <owner>/<repo>")
    url = parse_url(f"hf://{prefix}{repo_id}")
    assert isinstance(url, HubUrl)
    return url


def _file_url(repo: HubUrl, path: str) -> HubUrl:
    prefix = "" if repo.repo_type == "models" else f"{repo.repo_type}/"
    url = parse_url(f"hf://{prefix}{repo.repo_id}/{quote(path, safe='/')}")
    assert isinstance(url, HubUrl)
    if not url.path or url.path != path:
        raise InvalidUrlError(path, "filename", "not a file path inside the repository")
    return url


def _hf_options(
    revision: str | None, token: str | bool | None, endpoint: str | None, env: Mapping[str, str]
) -> HfOptions:
    """The HF backend's own resolution; ``token=False`` sends none, ``True`` requires one."""
    base = normalize_endpoint(endpoint or env.get("HF_ENDPOINT"))
    if token is False:
        return HfOptions(revision=revision or DEFAULT_REVISION, endpoint=base)
    explicit = token if isinstance(token, str) else None
    options = HfOptions.resolve(token=explicit, revision=revision, endpoint=base, env=env)
    if token is True and options.token is None:
        raise UsageError("token=True but no token found: set HF_TOKEN or log in")
    return options


def _patterns(patterns: str | Sequence[str] | None) -> tuple[str, ...]:
    if patterns is None:
        return ()
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def _layout(
    repo: HubUrl, revision: str, cache_dir: str | Path | None, local_dir: str | Path | None
) -> HubLayout:
    if local_dir is not None:
        return HfLocalDirLayout(Path(local_dir).expanduser().resolve(), repo)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    cache = (cache or default_hf_cache_dir(os.environ)).resolve()
    return HfCacheLayout(cache, repo, revision)


def _answer(location: Path | None, local_dir: str | Path | None) -> str:
    assert location is not None, "the layout knows its commit once the download finished"
    if local_dir is not None:
        return os.path.realpath(location)
    return str(location)


async def _resolve_commit(ctx: DownloadContext, repo: _HubRepo) -> str:
    backend = ctx.registry.for_url(repo.url)
    assert isinstance(backend, HfBackend)
    return await backend.resolve_revision(repo.url, repo.options)


@contextlib.asynccontextmanager
async def _context(store_dir: Path) -> AsyncIterator[DownloadContext]:
    store = Store(store_dir)
    registry = default_registry(BackendSettings())
    try:
        yield DownloadContext(store=store, registry=registry, observer=NullObserver())
    finally:
        await registry.aclose()
        store.close()


async def _with_context(store_dir: Path, body: Callable[[DownloadContext], Awaitable[T]]) -> T:
    async with _context(store_dir) as ctx:
        return await body(ctx)


def _store_dir(storage_dir: str | Path | None) -> Path:
    return store_dir(storage_dir, os.environ)


def _run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(make))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="damselfly") as pool:
        return pool.submit(asyncio.run, _awaited(make)).result()


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
