"""One Hugging Face repository as the API's arguments name it: URL, resolved options, layout.

``HubRepo.build`` turns huggingface_hub's arguments into damselfly's: ``repo_type`` (``model``,
``dataset``, ``space``) into an hf:// URL, ``token``/``endpoint``/``revision`` resolved by the HF
backend's options, ``headers``/``user_agent``/``library_name``/``library_version`` into the
headers sent to the hub (a ``User-Agent`` built as huggingface_hub builds it, naming damselfly
instead of hf_hub), ``etag_timeout`` into the per-request connect and read timeout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from damselfly._version import __version__
from damselfly.backends.base import RequestOptions
from damselfly.backends.hf import HfBackend
from damselfly.backends.hf_api import DEFAULT_REVISION, normalize_endpoint, repo_label
from damselfly.backends.hf_options import HfOptions
from damselfly.core.errors import InvalidUrlError, UsageError
from damselfly.core.urls import HubUrl, parse_url
from damselfly.download.hub_layouts import (
    HfCacheLayout,
    HfLocalDirLayout,
    HubLayout,
    default_hf_cache_dir,
    hf_repo_folder,
)
from damselfly.download.jobs import DownloadContext, FileJob

_REPO_TYPES = {None: "models", "model": "models", "dataset": "datasets", "space": "spaces"}


@dataclass(frozen=True)
class HubRepo:
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
        *,
        headers: Mapping[str, str] | None = None,
        user_agent: Mapping[str, Any] | str | None = None,
        library: tuple[str | None, str | None] = (None, None),
        timeout: float | None = None,
    ) -> HubRepo:
        url = repo_url(repo_id, repo_type)
        options = hf_options(revision, token, endpoint, os.environ)
        sent = {"User-Agent": user_agent_header(library, user_agent), **(headers or {})}
        params = RequestOptions(headers=tuple(sent.items()), params=options.request_params(url))
        if timeout is not None and timeout > 0:
            params = RequestOptions(params.headers, float(timeout), False, params.params)
        return cls(url, options.revision, params)

    @property
    def label(self) -> str:
        return repo_label(self.url)

    def template(self, output: Path) -> FileJob:
        # The layout owns its files: a stale or partial one is replaced, never refused.
        return FileJob(url=self.url, output=output, options=self.options, overwrite=True)

    async def resolve_commit(self, ctx: DownloadContext) -> str:
        backend = ctx.registry.for_url(self.url)
        assert isinstance(backend, HfBackend)
        return await backend.resolve_revision(self.url, self.options)


def user_agent_header(
    library: tuple[str | None, str | None], extra: Mapping[str, Any] | str | None
) -> str:
    name, version = library
    parts = [f"{name}/{version or 'unknown'}"] if name else []
    parts.append(f"damselfly/{__version__}")
    if isinstance(extra, Mapping):
        parts.extend(f"{k}/{v}" for k, v in extra.items())
    elif extra:
        parts.append(extra)
    return "; ".join(parts)


def repo_url(repo_id: str, repo_type: str | None) -> HubUrl:
    if repo_type not in _REPO_TYPES:
        raise InvalidUrlError(repo_id, "repo type", f"{repo_type!r} is not model, dataset, space")
    prefix = "" if _REPO_TYPES[repo_type] == "models" else f"{_REPO_TYPES[repo_type]}/"
    if repo_id.count("/") != 1:
        raise InvalidUrlError(repo_id, "repository", "expected <owner>/<repo>")
    url = parse_url(f"hf://{prefix}{repo_id}")
    assert isinstance(url, HubUrl)
    return url


def file_url(repo: HubUrl, path: str) -> HubUrl:
    prefix = "" if repo.repo_type == "models" else f"{repo.repo_type}/"
    url = parse_url(f"hf://{prefix}{repo.repo_id}/{quote(path, safe='/')}")
    assert isinstance(url, HubUrl)
    if not url.path or url.path != path:
        raise InvalidUrlError(path, "filename", "not a file path inside the repository")
    return url


def hf_options(
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


def patterns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def cache_root(cache_dir: str | Path | None) -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    return (cache or default_hf_cache_dir(os.environ)).resolve()


def cache_repo_dir(repo: HubRepo, cache_dir: str | Path | None) -> Path:
    """``<cache>/models--owner--repo``: where refs and snapshots are looked up offline."""
    return cache_root(cache_dir) / hf_repo_folder(repo.url)


def hub_layout(
    repo: HubRepo,
    cache_dir: str | Path | None,
    local_dir: str | Path | None,
    *,
    force: bool = False,
) -> HubLayout:
    if local_dir is not None:
        return HfLocalDirLayout(Path(local_dir).expanduser().resolve(), repo.url, force=force)
    return HfCacheLayout(cache_root(cache_dir), repo.url, repo.revision, force=force)
