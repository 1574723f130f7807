"""The modelscope SDK's ``snapshot_download`` and ``model_file_download``, served by damselfly
(``damselfly.modelscope``).

Same parameters as modelscope 1.40 (``model_id``/``repo_id``, ``revision``, ``cache_dir``,
``local_dir``, the old and new pattern names, ``local_files_only``, ``token``, ``endpoint``; the
SDK's ``cookies``, ``user_agent`` and ``progress_callbacks`` are accepted and not used) and the
same paths: ``<cache>/{models,datasets}/<owner>--<name>/snapshots/<revision>/`` of
``MODELSCOPE_CACHE`` (or ``cache_dir``), or the files below ``local_dir``. The token is
``token`` else ``MODELSCOPE_API_TOKEN`` else what ``modelscope login`` saved. Differences: the
revision defaults to ``master`` for both functions (the SDK's ``model_file_download`` picks
the newest tag older than its own release). Errors are damselfly's, also instances of the
SDK's classes when it is installed (``ms_compat.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import SecretStr

from damselfly.api import offline
from damselfly.api.ms_compat import as_ms_error
from damselfly.api.runner import run_download
from damselfly.backends.base import RequestOptions
from damselfly.backends.modelscope_options import (
    DEFAULT_REVISION,
    ModelScopeOptions,
    resolve_ms_endpoint,
    resolve_ms_token,
)
from damselfly.core.errors import (
    DamselflyError,
    InvalidUrlError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.urls import HubUrl, parse_url
from damselfly.download.hub_layouts import (
    HubLayout,
    ModelScopeCacheLayout,
    default_ms_cache_dir,
    download_hub_file,
)
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.tree_download import PlainLayout, TreeJob, download_tree

T = TypeVar("T")
_HUB_DOWN = (SourceUnreachableError, SourceTimeoutError)  # the SDK's fallback: network only
_TYPES = {None: "models", "model": "models", "dataset": "datasets"}


def snapshot_download(
    model_id: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    user_agent: dict[str, Any] | str | None = None,
    local_files_only: bool | None = False,
    cookies: Any = None,
    ignore_file_pattern: str | list[str] | None = None,
    allow_file_pattern: str | list[str] | None = None,
    local_dir: str | None = None,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    max_workers: int | None = None,
    repo_id: str | None = None,
    repo_type: str | None = None,
    progress_callbacks: list[Any] | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    *,
    storage_dir: str | Path | None = None,
) -> str:
    """Download a repository (or the files the patterns select); returns its folder."""
    url = _repo_url(repo_id or model_id, repo_type)
    options = _options(revision, token, endpoint)
    layout = _layout(url, options.revision, cache_dir, local_dir)
    where = layout.location("")
    assert where is not None
    if local_files_only:
        return _ms_errors(lambda: _cached(where, url))
    include = _patterns(allow_patterns) + _patterns(allow_file_pattern)
    exclude = _patterns(ignore_patterns) + _patterns(ignore_file_pattern)
    job = TreeJob(
        template=_template(url, options, layout.root),
        include=include,
        exclude=exclude,
        concurrent_files=max(1, max_workers or 4),
        layout=layout,
    )

    async def run(ctx: DownloadContext) -> str:
        await download_tree(job, ctx)
        return str(where)

    return _ms_errors(
        lambda: offline.online_or_cached(
            lambda: run_download(storage_dir, run),
            lambda: _existing(where),
            url.repo_id,
            (),  # the SDK's snapshot_download raises NetworkError; it does not fall back
        )
    )


def model_file_download(
    model_id: str,
    file_path: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    local_dir: str | None = None,
    cookies: Any = None,
    token: str | None = None,
    endpoint: str | None = None,
    local_files_only: bool = False,
    user_agent: Any = None,
    storage_dir: str | Path | None = None,
) -> str:
    """Download one file of a model; returns its path."""
    repo = _repo_url(model_id, None)
    options = _options(revision, token, endpoint)
    url = _file_url(repo, file_path)
    layout = _layout(repo, options.revision, cache_dir, local_dir)
    where = layout.location(url.path)
    assert where is not None
    if local_files_only:
        return _ms_errors(lambda: _cached(where, url))
    template = replace(_template(repo, options, layout.root), url=url)

    async def run(ctx: DownloadContext) -> str:
        await download_hub_file(template, layout, ctx)
        return str(where)

    return _ms_errors(
        lambda: offline.online_or_cached(
            lambda: run_download(storage_dir, run),
            lambda: _existing(where),
            file_path,
            _HUB_DOWN,
        )
    )


def _options(revision: str | None, token: str | None, endpoint: str | None) -> ModelScopeOptions:
    found = resolve_ms_token(token, os.environ)
    return ModelScopeOptions(
        token=SecretStr(found) if found else None,
        revision=revision or DEFAULT_REVISION,
        endpoint=resolve_ms_endpoint(endpoint, os.environ),
    )


def _template(url: HubUrl, options: ModelScopeOptions, root: Path) -> FileJob:
    params = RequestOptions(params=options.request_params(url))
    return FileJob(url=url, output=root, options=params, overwrite=True)


def _layout(
    url: HubUrl, revision: str, cache_dir: str | Path | None, local_dir: str | None
) -> HubLayout:
    if local_dir is not None:
        return _LocalDir(Path(local_dir).expanduser().resolve())
    cache = Path(cache_dir).expanduser() if cache_dir else default_ms_cache_dir(os.environ)
    return ModelScopeCacheLayout(cache.resolve(), url, revision)


class _LocalDir(PlainLayout):
    def location(self, repo_path: str) -> Path | None:
        return self.root / repo_path if repo_path else self.root


def _repo_url(repo_id: str | None, repo_type: str | None) -> HubUrl:
    if not repo_id or repo_id.count("/") != 1:
        raise InvalidUrlError(str(repo_id), "repository", "expected <owner>/<name>")
    if repo_type not in _TYPES:
        raise InvalidUrlError(repo_id, "repo type", f"{repo_type!r} is not model or dataset")
    prefix = "" if _TYPES[repo_type] == "models" else "datasets/"
    url = parse_url(f"modelscope://{prefix}{repo_id}")
    assert isinstance(url, HubUrl)
    return url


def _file_url(repo: HubUrl, path: str) -> HubUrl:
    url = parse_url(f"modelscope://{repo.repo_id}/{quote(path, safe='/')}")
    assert isinstance(url, HubUrl)
    if not url.path or url.path != path:
        raise InvalidUrlError(path, "file path", "not a file path inside the repository")
    return url


def _patterns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _ms_errors(body: Callable[[], T]) -> T:
    """``body()``, its damselfly errors raised as the SDK's classes too (``ms_compat.py``)."""
    try:
        return body()
    except DamselflyError as error:
        converted = as_ms_error(error)
        if converted is error:
            raise
        raise converted from error.__cause__


def _existing(where: Path) -> str | None:
    return str(where) if where.exists() else None


def _cached(where: Path, url: HubUrl) -> str:
    found = _existing(where)
    if found is None:
        raise offline.missing(url.redacted(), "local_files_only=True")
    return found
