"""huggingface_hub's ``snapshot_download`` and ``hf_hub_download``, served by damselfly.

Same parameters (a test compares the signatures with the installed huggingface_hub's), same
return values: by default a folder (or file) inside
``<cache>/<type>s--<owner>--<repo>/snapshots/<commit>/`` of the Hugging Face cache, or with
``local_dir`` the files below it (with huggingface_hub's ``.cache/huggingface`` metadata).
Bytes go through the same piece store and checks as ``dfget``. ``storage_dir`` (damselfly's
own) is the piece store, as ``dfget --storage-dir``.

Settings are read when a function is called, never at import: endpoint ``endpoint`` else
``HF_ENDPOINT``; token ``token`` (``False``: none) else ``HF_TOKEN`` else the token file; cache
``cache_dir`` else ``HF_HUB_CACHE`` else ``HF_HOME/hub``. ``local_files_only`` and
``HF_HUB_OFFLINE`` answer from the caches (``offline.py``); errors are huggingface_hub's
classes when it is installed (``hf_compat.py``); progress as ``progress.py`` says.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from damselfly.api import offline
from damselfly.api.hf_compat import DryRunError, as_hf_error
from damselfly.api.hf_repo import HubRepo, cache_repo_dir, file_url, hub_layout, patterns
from damselfly.api.progress import TqdmObserver
from damselfly.api.runner import run_download
from damselfly.config.hub_env import hub_offline
from damselfly.config.paths import store_dir
from damselfly.core.errors import DamselflyError
from damselfly.download.hub_layouts import HfCacheLayout, download_hub_file, entry_from_stat
from damselfly.download.hub_restore import restore_from_store
from damselfly.download.jobs import DownloadContext
from damselfly.download.tree_download import TreeJob, download_tree, list_tree

T = TypeVar("T")
DEFAULT_ETAG_TIMEOUT = 10.0


def snapshot_download(
    repo_id: str,
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    library_name: str | None = None,
    library_version: str | None = None,
    user_agent: dict[str, Any] | str | None = None,
    etag_timeout: float = DEFAULT_ETAG_TIMEOUT,
    force_download: bool = False,
    token: bool | str | None = None,
    local_files_only: bool = False,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    max_workers: int = 8,
    tqdm_class: type[Any] | None = None,
    headers: dict[str, str] | None = None,
    endpoint: str | None = None,
    dry_run: bool = False,
    storage_dir: str | Path | None = None,
) -> str | list[Any]:
    """Download a repository (all files, or those the patterns select); returns its folder."""
    return _hf_errors(
        lambda: _snapshot(
            HubRepo.build(
                repo_id, repo_type, revision, token, endpoint,
                headers=headers, user_agent=user_agent, library=(library_name, library_version),
                timeout=etag_timeout,
            ),
            cache_dir, local_dir, (patterns(allow_patterns), patterns(ignore_patterns)),
            max_workers, force_download, local_files_only, dry_run, tqdm_class, storage_dir,
        )
    )  # fmt: skip


def hf_hub_download(
    repo_id: str,
    filename: str,
    *,
    subfolder: str | None = None,
    repo_type: str | None = None,
    revision: str | None = None,
    library_name: str | None = None,
    library_version: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    user_agent: dict[str, Any] | str | None = None,
    force_download: bool = False,
    etag_timeout: float = DEFAULT_ETAG_TIMEOUT,
    token: bool | str | None = None,
    local_files_only: bool = False,
    headers: dict[str, str] | None = None,
    endpoint: str | None = None,
    tqdm_class: type[Any] | None = None,
    dry_run: bool = False,
    storage_dir: str | Path | None = None,
) -> str | Any:
    """Download one file of a repository; returns its path (inside the snapshot or local_dir)."""
    path = f"{subfolder}/{filename}" if subfolder else filename
    return _hf_errors(
        lambda: _file(
            HubRepo.build(
                repo_id, repo_type, revision, token, endpoint,
                headers=headers, user_agent=user_agent, library=(library_name, library_version),
                timeout=etag_timeout,
            ),
            path, cache_dir, local_dir, force_download, local_files_only, dry_run, tqdm_class,
            storage_dir,
        )
    )  # fmt: skip


def _snapshot(
    repo: HubRepo,
    cache_dir: str | Path | None,
    local_dir: str | Path | None,
    selection: tuple[tuple[str, ...], tuple[str, ...]],
    max_workers: int,
    force: bool,
    local_only: bool,
    dry_run: bool,
    tqdm_class: type[Any] | None,
    storage_dir: str | Path | None,
) -> str | list[Any]:
    layout = hub_layout(repo, cache_dir, local_dir, force=force and not dry_run)
    local = Path(local_dir).expanduser() if local_dir is not None else None
    repo_dir = cache_repo_dir(repo, cache_dir)

    def cached() -> str | None:
        restore = _restorer(repo, cache_dir, local_dir, storage_dir)
        return offline.cached_snapshot(repo_dir, repo.revision, local, selection, "", restore)

    if local_only or hub_offline(os.environ):
        return _offline(cached, repo, dry_run, "snapshot", local_only)
    job = TreeJob(
        template=repo.template(layout.root),
        include=selection[0],
        exclude=selection[1],
        concurrent_files=max(1, max_workers),
        layout=layout,
    )

    async def listing(ctx: DownloadContext) -> list[Any]:
        from damselfly.api.dry_run import dry_run_info

        entries = await list_tree(job, ctx)
        return [dry_run_info(e, _repo_path(e), layout, force) for e in entries]

    async def run(ctx: DownloadContext) -> str:
        await download_tree(job, ctx)
        if isinstance(layout, HfCacheLayout) and layout.commit is None:
            layout.adopt_commit(await repo.resolve_commit(ctx))  # nothing matched
        return _answer(layout.location(""), local_dir)

    if dry_run:
        return _dry(lambda: run_download(storage_dir, listing))
    observer = TqdmObserver("Fetching files", tqdm_class)
    try:
        return offline.online_or_cached(
            lambda: run_download(storage_dir, run, observer), cached, "snapshot"
        )
    finally:
        observer.close()


def _file(
    repo: HubRepo,
    path: str,
    cache_dir: str | Path | None,
    local_dir: str | Path | None,
    force: bool,
    local_only: bool,
    dry_run: bool,
    tqdm_class: type[Any] | None,
    storage_dir: str | Path | None,
) -> str | Any:
    url = file_url(repo.url, path)
    layout = hub_layout(repo, cache_dir, local_dir, force=force and not dry_run)
    local = Path(local_dir).expanduser() if local_dir is not None else None
    repo_dir = cache_repo_dir(repo, cache_dir)
    template = replace(repo.template(layout.root), url=url)

    def cached() -> str | None:
        restore = _restorer(repo, cache_dir, local_dir, storage_dir)
        return offline.cached_file(repo_dir, repo.revision, path, local, restore)

    if local_only or hub_offline(os.environ):
        return _offline(cached, repo, dry_run, path, local_only)

    async def info(ctx: DownloadContext) -> Any:
        from damselfly.api.dry_run import dry_run_info

        stat = await ctx.registry.for_url(url).stat(url, template.options)
        return dry_run_info(entry_from_stat(template, stat), path, layout, force)

    async def run(ctx: DownloadContext) -> str:
        await download_hub_file(template, layout, ctx)
        return _answer(layout.location(url.path), None)

    if dry_run:
        return _dry(lambda: run_download(storage_dir, info))
    observer = TqdmObserver(path, tqdm_class)
    try:
        return offline.online_or_cached(
            lambda: run_download(storage_dir, run, observer), cached, path
        )
    finally:
        observer.close()


def _restorer(
    repo: HubRepo,
    cache_dir: str | Path | None,
    local_dir: str | Path | None,
    storage_dir: str | Path | None,
) -> offline.Restorer | None:
    """Offline, files the cache lacks from the piece store (``download/hub_restore.py``)."""
    if local_dir is not None:
        return None

    def restore(commit: str, paths: list[str]) -> list[str]:
        layout = hub_layout(repo, cache_dir, None, force=False)
        assert isinstance(layout, HfCacheLayout)
        return restore_from_store(store_dir(storage_dir, os.environ), layout, commit, paths)

    return restore


def _offline(
    cached: Callable[[], str | None], repo: HubRepo, dry_run: bool, what: str, local_only: bool
) -> str:
    if dry_run:
        raise DryRunError(f"{repo.label}: dry run needs the hub, and outgoing traffic is off")
    found = cached()
    if found is None:
        why = "local_files_only=True" if local_only else "HF_HUB_OFFLINE is set"
        raise offline.missing(f"{repo.label} {what}", why)
    return found


def _dry(body: Callable[[], T]) -> T:
    try:
        return body()
    except DamselflyError as error:
        if isinstance(error, ConnectionError | TimeoutError):
            raise DryRunError(f"dry run: the hub cannot be reached ({error})") from error
        raise


def _repo_path(entry: Any) -> str:
    url = entry.url
    return str(getattr(url, "path", "") or entry.path)


def _answer(location: Path | None, local_dir: str | Path | None) -> str:
    assert location is not None, "the layout knows its commit once the download finished"
    if local_dir is not None:
        return os.path.realpath(location)
    return str(location)


def _hf_errors(body: Callable[[], T]) -> T:
    """``body()``, its damselfly errors raised as huggingface_hub's classes too."""
    try:
        return body()
    except DamselflyError as error:
        converted = as_hf_error(error)
        if converted is error:
            raise
        raise converted from error.__cause__
