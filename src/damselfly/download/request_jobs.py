"""Turn a ``DownloadRequest`` into download jobs, and run it: the same code in dfget standalone
and in dfdaemon.

``build_hub_layout`` picks where a hub download lands (a hub's cache, a local dir with
huggingface_hub's metadata, or nowhere special); ``build_jobs`` makes the ``FileJob`` or
``TreeJob``; ``run_request`` runs the whole request under its ``timeout`` and answers with a
``RunResult`` (counts, plus what dfget prints on stdout: a hub cache path).

Per-scheme settings come resolved in ``request.source`` (the scheme's typed options, see
``backends/options.py``); they become the backend's request params here. A request built
without them gets the scheme's defaults resolved from its ``env`` (never the process
environment): a daemon serves callers with other environments.
"""

from __future__ import annotations

from pathlib import Path

from damselfly.backends.base import SECRET_HEADERS, RequestOptions
from damselfly.backends.registry import BackendSettings
from damselfly.core.digests import parse_digest
from damselfly.core.errors import UsageError
from damselfly.core.pieces import validate_piece_length
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.download.deadline import deadline
from damselfly.download.file_download import download_file
from damselfly.download.hub_layouts import HubLayout, download_hub_file
from damselfly.download.hub_placement import hub_layout
from damselfly.download.jobs import DownloadContext, FileJob, FileResult
from damselfly.download.request import DownloadRequest, uses_hub_cache
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.download.tree_download import TreeJob, download_tree
from damselfly.protocol.local_api import RunResult

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
    url = request.source_url
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
    url = request.source_url
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
        hard_link=request.hard_link,
        require_hard_link=request.force_hard_link,
        identity_text=request.content_for_task_id,
        back_to_source=request.back_to_source,
        try_public=_token_may_be_unneeded(request),
    )


def _token_may_be_unneeded(request: DownloadRequest) -> bool:
    """A hub token and no other secret: the file may be public (``public_files.py``)."""
    source = request.resolved_source
    secret_headers = any(name.lower() in SECRET_HEADERS for name, _ in request.headers)
    return source is not None and source.token_may_be_unneeded and not secret_headers


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
    """Where a hub download lands (``hub_placement.hub_layout``); ``None``: at ``-O``."""
    return hub_layout(
        request.source_url, request.resolved_source, request.output, request.recursive, request.env
    )


# -- request options ---------------------------------------------------------------------------


def request_options(request: DownloadRequest, url: SourceUrl) -> RequestOptions:
    """Headers, TLS, and the params the URL scheme's own options give its backend."""
    source = request.resolved_source
    params = source.request_params(url) if source is not None else ()
    return RequestOptions(headers=request.headers, insecure=request.insecure, params=params)
