"""Turn a ``DownloadRequest`` into download jobs, and run it: the same code in dfget standalone
and in dfdaemon.

``build_hub_layout`` picks where a hub download lands (a hub's cache, a local dir with
huggingface_hub's metadata, or nowhere special); ``build_jobs`` makes the ``FileJob`` or
``TreeJob``; ``run_request`` runs the whole request under its ``timeout`` and answers with a
``RunResult`` (counts, plus what dfget prints on stdout: a hub cache path).

Credentials come from the request's flags first, then its ``env`` (never the process
environment): a daemon serves callers with other environments. Object-store settings found in
``env`` become request params here, exactly as the backend would have read them.
"""

from __future__ import annotations

from pathlib import Path

from damselfly.backends.base import RequestOptions
from damselfly.backends.registry import BackendSettings
from damselfly.core.digests import parse_digest
from damselfly.core.errors import UsageError
from damselfly.core.pieces import validate_piece_length
from damselfly.core.urls import HubUrl, SourceUrl, parse_url
from damselfly.download.deadline import deadline
from damselfly.download.file_download import download_file
from damselfly.download.hub_layouts import (
    HfCacheLayout,
    HfLocalDirLayout,
    HubLayout,
    ModelScopeCacheLayout,
    default_hf_cache_dir,
    default_ms_cache_dir,
    download_hub_file,
)
from damselfly.download.jobs import DownloadContext, FileJob, FileResult
from damselfly.download.request import DownloadRequest, uses_hub_cache
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.download.tree_download import TreeJob, download_tree
from damselfly.protocol.local_api import RunResult

DEFAULT_HF_ENDPOINT = "https://huggingface.co"


# -- running -----------------------------------------------------------------------------------


async def run_request(request: DownloadRequest, ctx: DownloadContext) -> RunResult:
    layout = build_hub_layout(request)
    job = build_jobs(request, layout)
    async with deadline(request.timeout, request.redacted_url()):
        results = await _download(job, layout, ctx)
    return summarise(results, _announcement(request, layout))


async def _download(
    job: FileJob | TreeJob, layout: HubLayout | None, ctx: DownloadContext
) -> list[FileResult]:
    if isinstance(job, TreeJob):
        return await download_tree(job, ctx)
    if layout is not None:
        result = await download_hub_file(job, layout, ctx)
        return [result] if result is not None else []
    return [await download_file(job, ctx)]


def summarise(results: list[FileResult], stdout: str = "") -> RunResult:
    total = sum(r.content_length for r in results)
    source = sum(r.source_bytes for r in results)
    reused = sum(r.reused_bytes for r in results)
    return RunResult(
        files=len(results),
        bytes=total,
        source_bytes=source,
        peer_bytes=max(0, total - source - reused),
        reused_bytes=reused,
        stdout=stdout,
    )


def _announcement(request: DownloadRequest, layout: HubLayout | None) -> str:
    """With a hub cache, the path of what was asked for is the command's data (stdout)."""
    url = parse_url(request.url)
    where = layout.location(url.path) if layout and isinstance(url, HubUrl) else None
    return f"{where}\n" if where is not None and uses_hub_cache(request) else ""


def backend_settings(request: DownloadRequest) -> BackendSettings:
    return BackendSettings(request_attempts=request.origin_retries + 1)


def fetch_policy(request: DownloadRequest) -> FetchPolicy:
    return FetchPolicy(
        concurrency=request.concurrent_pieces, piece_attempts=request.origin_retries + 1
    )


# -- jobs --------------------------------------------------------------------------------------


def build_jobs(request: DownloadRequest, layout: HubLayout | None = None) -> FileJob | TreeJob:
    """A ``TreeJob`` for ``-r`` (into ``layout`` when given), else one ``FileJob`` (which the
    caller puts into ``layout`` with ``download_hub_file`` when given)."""
    if request.recursive:
        return build_tree_job(request, layout)
    return build_file_job(request)


def build_file_job(request: DownloadRequest) -> FileJob:
    url = parse_url(request.url)
    if request.output is None and not uses_hub_cache(request):
        raise UsageError("-O/--output is required")
    if request.piece_length is not None:
        validate_piece_length(request.piece_length)
    return FileJob(
        url=url,
        output=Path(request.output or "/"),  # "/" only with a hub cache layout (replaced)
        options=request_options(request, url),
        expected_digest=parse_digest(request.digest) if request.digest else None,
        piece_length=request.piece_length,
        tag=request.tag,
        application=request.application,
        filtered_query_params=request.filtered_query_params,
        overwrite=request.overwrite or uses_hub_cache(request),  # a cache replaces stale files
        hard_link=True,
        require_hard_link=request.force_hard_link,
        identity_text=request.content_for_task_id,
        back_to_source=request.back_to_source,
    )


def build_tree_job(request: DownloadRequest, layout: HubLayout | None = None) -> TreeJob:
    if request.digest:
        raise UsageError("--digest applies to one file; it cannot be used with -r")
    if request.content_for_task_id:
        raise UsageError(
            "--content-for-calculating-task-id names one file; it cannot be used with -r"
        )
    return TreeJob(
        template=build_file_job(request),
        include=request.include,
        exclude=request.exclude,
        max_files=request.max_files,
        concurrent_files=max(1, request.concurrent_files),
        layout=layout,
    )


def build_hub_layout(request: DownloadRequest) -> HubLayout | None:
    """Where a hub download lands: a hub's cache (its dir: the output, else the hub's default),
    or for ``hf:// -r -O dir`` a plain dir with huggingface_hub's metadata; else ``None``."""
    url = parse_url(request.url)
    if not isinstance(url, HubUrl):
        return None
    output = Path(request.output) if request.output else None
    if uses_hub_cache(request) and url.scheme == "hf":
        cache = output or default_hf_cache_dir(request.env).absolute()
        return HfCacheLayout(cache, url, request.hf_revision or "main")
    if uses_hub_cache(request):
        cache = output or default_ms_cache_dir(request.env).absolute()
        return ModelScopeCacheLayout(cache, url, request.ms_revision or "master")
    if url.scheme == "hf" and request.recursive and output is not None:
        return HfLocalDirLayout(output, url)
    return None


# -- request options ---------------------------------------------------------------------------


def request_options(request: DownloadRequest, url: SourceUrl) -> RequestOptions:
    params = _object_store_params(request, url) + _hub_params(request, url)
    return RequestOptions(headers=request.headers, insecure=request.insecure, params=params)


# dfget's generic --storage-* flags, as each store names them (None: the store has no such).
_STORAGE_FLAG_PARAMS: dict[str, tuple[str | None, ...]] = {
    # scheme: (endpoint, region, key id, key secret, session token)
    "s3": ("endpoint", "region", "access_key_id", "secret_access_key", "session_token"),
    "oss": ("endpoint", None, "access_key_id", "access_key_secret", "security_token"),
    "obs": ("endpoint", None, "access_key_id", "secret_access_key", None),
    "cos": ("endpoint", None, "secret_id", "secret_key", "security_token"),
    "abs": ("endpoint", None, "account_name", "account_key", "sas_token"),
    "gs": ("endpoint", None, None, None, "token"),
}


def _object_store_params(request: DownloadRequest, url: SourceUrl) -> tuple[tuple[str, str], ...]:
    """The ``--storage-*`` flags, then the store's environment variables from ``env``."""
    flags = _storage_flag_params(request, url)
    given = {name for name, _ in flags}
    return flags + tuple((k, v) for k, v in _object_store_env(request, url) if k not in given)


def _storage_flag_params(request: DownloadRequest, url: SourceUrl) -> tuple[tuple[str, str], ...]:
    names = _STORAGE_FLAG_PARAMS.get(url.scheme)
    if names is None:
        return ()
    values = (
        request.storage_endpoint,
        request.storage_region,
        request.storage_access_key_id,
        request.storage_access_key_secret,
        request.storage_session_token,
    )
    return tuple(
        (f"{url.scheme}_{name}", value)
        for name, value in zip(names, values, strict=True)
        if name and value
    )


def _object_store_env(request: DownloadRequest, url: SourceUrl) -> list[tuple[str, str]]:
    """Each setting's first environment variable that is set, as the backend reads them."""
    from damselfly.backends.objectstore import STORES  # only for object-store URLs: startup

    spec = STORES.get(url.scheme)
    if spec is None:
        return []
    found = []
    for setting in spec.settings:
        value = next((request.env[n] for n in setting.env if request.env.get(n)), None)
        if value:
            found.append((spec.param_name(url.scheme, setting), value))
    return found


def _hub_params(request: DownloadRequest, url: SourceUrl) -> tuple[tuple[str, str], ...]:
    """Endpoint, token and revision of the hub the URL names (and only that hub's token)."""
    env = request.env
    if url.scheme == "hf":
        from damselfly.backends.hf_api import resolve_hf_token  # only for hub URLs: startup

        values = {
            "hf_endpoint": request.hf_base_url or env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT,
            "hf_token": resolve_hf_token(request.hf_token, env),
            "hf_revision": request.hf_revision or "main",
        }
    elif url.scheme == "modelscope":
        from damselfly.backends.modelscope import resolve_ms_endpoint, resolve_ms_token

        values = {
            "ms_endpoint": resolve_ms_endpoint(request.ms_base_url, env),
            "ms_token": resolve_ms_token(request.ms_token, env),
            "ms_revision": request.ms_revision or "master",
        }
    else:
        return ()
    return tuple(
        (k, v.rstrip("/") if k.endswith("endpoint") else v) for k, v in values.items() if v
    )
