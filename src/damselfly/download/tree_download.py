"""Recursive downloads (``dfget -r``): list, filter, then fetch several files at once.

A listing comes from the network (a bucket, a hub), so every path in it is untrusted: it must
be relative, free of ``.``/``..``/empty segments, NUL and backslashes, unique, and must not
escape the output directory through a symlink already present there. Each listed file
becomes an ordinary ``FileJob`` with a scheme-native URL and the listing's request params
(e.g. a hub revision pinned to one commit), so every file goes through the same pipeline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from damselfly.backends.base import Entry
from damselfly.core.error_groups import group_error
from damselfly.core.errors import OutputError, SourceProtocolError
from damselfly.core.globs import path_selected
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.download.file_download import download_file
from damselfly.download.jobs import DownloadContext, FileJob, FileResult
from damselfly.download.output_check import check_output_dir


class TreeLayout(Protocol):
    """Where the files of a tree land: a plain directory, or a tool's cache layout."""

    @property
    def root(self) -> Path: ...

    def listed(self, entries: Sequence[Entry]) -> None:
        """The whole listing, before include/exclude select from it (a tool's tree cache)."""

    def output_for(self, entry: Entry) -> Path | None:
        """The path this file's bytes go to; ``None`` when it is already there."""

    def finish(self, entries: Sequence[Entry]) -> None:
        """Called once every file is in place (symlinks, refs, metadata)."""


class PlainLayout:
    """``-O dir``: the tree's relative paths below ``root``, like ``hf download --local-dir``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return self._root

    def listed(self, entries: Sequence[Entry]) -> None:
        pass

    def output_for(self, entry: Entry) -> Path | None:
        return safe_output_path(self._root, entry.path)

    def finish(self, entries: Sequence[Entry]) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class TreeJob:
    """A directory-like URL to mirror; ``template`` carries the shared per-file settings
    (options, piece length, tag, overwrite, ...); ``layout`` defaults to a plain directory at
    ``template.output``."""

    template: FileJob
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_files: int | None = None
    concurrent_files: int = 5
    layout: TreeLayout | None = None

    def effective_layout(self) -> TreeLayout:
        return self.layout or PlainLayout(self.template.output)


async def list_tree(job: TreeJob, ctx: DownloadContext) -> list[Entry]:
    """The files the job selects (include, exclude, max_files), sorted by path."""
    return _selected(job, await _listing(job, ctx))


async def _listing(job: TreeJob, ctx: DownloadContext) -> list[Entry]:
    url = job.template.url
    entries = await ctx.registry.for_url(url).list(url, job.template.options)
    validate_listing(url.redacted(), [e.path for e in entries])
    return entries


def _selected(job: TreeJob, entries: list[Entry]) -> list[Entry]:
    url = job.template.url
    selected = [e for e in entries if path_selected(e.path, job.include, job.exclude)]
    if job.max_files is not None and len(selected) > job.max_files:
        raise SourceProtocolError(
            url.redacted(),
            f"{len(selected)} files selected, more than --max-files {job.max_files}",
        )
    return sorted(selected, key=lambda e: e.path)


async def download_tree(job: TreeJob, ctx: DownloadContext) -> list[FileResult]:
    layout = job.effective_layout()
    check_output_dir(layout.root)
    listing = await _listing(job, ctx)
    entries = _selected(job, listing)
    layout.listed(listing)
    placed = [(entry, layout.output_for(entry)) for entry in entries]
    jobs = [entry_job(job.template, entry, out) for entry, out in placed if out is not None]
    limit = asyncio.Semaphore(max(1, job.concurrent_files))

    async def one(file_job: FileJob) -> FileResult:
        async with limit:
            return await download_file(file_job, ctx)

    try:
        async with asyncio.TaskGroup() as group:
            running = [group.create_task(one(j)) for j in jobs]
    except BaseExceptionGroup as errors:
        raise group_error(errors) from None
    layout.finish(entries)
    return [task.result() for task in running]


def entry_job(template: FileJob, entry: Entry, output: Path) -> FileJob:
    options = template.options
    if entry.params:
        options = options.with_params(**dict(entry.params))
    return dataclasses.replace(
        template,
        url=entry.url,
        output=output,
        options=options,
        name=entry.path,
        expected_digest=entry.content_digest,
        expected_length=entry.content_length,
    )


def validate_listing(source: str, paths: Sequence[str]) -> None:
    seen: set[str] = set()
    for path in paths:
        problem = unsafe_path_reason(path)
        if problem is None and path in seen:
            problem = "listed twice"
        if problem is not None:
            raise SourceProtocolError(source, f"unsafe path in listing {path!r}: {problem}")
        seen.add(path)


def safe_output_path(root: Path, relative: str) -> Path:
    """``root/relative``, refusing any existing symlink on the way that leads outside root."""
    problem = unsafe_path_reason(relative)
    if problem is not None:
        raise OutputError(str(root / relative), f"unsafe path: {problem}")
    target = root / relative
    real_root = Path(os.path.realpath(root))
    real_parent = Path(os.path.realpath(target.parent))
    if real_parent != real_root and real_root not in real_parent.parents:
        raise OutputError(str(target), f"escapes {root} through a symlink")
    if target.is_symlink():
        raise OutputError(str(target), "is a symlink; refusing to write through it")
    return target
