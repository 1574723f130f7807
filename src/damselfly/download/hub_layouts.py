"""Where hub downloads land: the caches huggingface_hub and the modelscope SDK read, and a plain
directory that ``hf download --local-dir`` recognises.

Each layout is a ``TreeLayout`` (``tree_download``): ``output_for(entry)`` names the file a
listed entry's bytes go to (``None``: already there), ``finish(entries)`` runs once every file
is in place. Paths come from a hub listing (untrusted): every one goes through
``validate_listing`` / ``safe_output_path``, so nothing is written outside the layout's root.

``HfCacheLayout`` (``dfget --hf-cache``, the Python API's default), as huggingface_hub writes it::

    <cache>/{models|datasets|spaces}--<owner>--<repo>/
        blobs/<etag>                        the bytes; etag = LFS sha256 or git blob sha1
        snapshots/<commit>/<path>           relative symlink to ../../blobs/<etag> (one more
                                            ``..`` per directory level of <path>)
        refs/<revision>                     the commit, no newline (only when the revision
                                            asked for is a branch or tag; refs/pr/1 nests)
        trees/<commit>.json                 the repo's listing at that commit, when the whole
                                            repo was listed, once the download succeeded
                                            (``hub_trees.py``; also in a local dir's
                                            ``.cache/huggingface/``)

A blob already present with the right size is not fetched again (it is named by its content).
Files the hub lists twice with the same content share one blob.

``HfLocalDirLayout`` (``dfget hf://... -r -O dir``): the repo's files below ``dir``, plus
huggingface_hub's ``<dir>/.cache/huggingface/download/<path>.metadata`` (commit, etag, time),
so a later ``hf download --local-dir dir`` sees the files as current instead of fetching small
files again and re-hashing large ones. A file whose metadata already names the listed etag
(and that was not modified since) is skipped. Only written when the listing is the repo root:
a subfolder download's paths are not the repo's paths.

``ModelScopeCacheLayout`` (``dfget --ms-cache``), as the modelscope SDK (1.40) writes it::

    <cache>/{models|datasets}/<owner>--<name>/snapshots/<revision as asked, e.g. master>/<path>

plain files. The snapshot is named by the revision's *name*, so a file already there is reused
only when its size and sha256 match the listing.

``download_hub_file`` puts a single file (no ``-r``) into a layout: it stats the file to learn
its commit and digest, then downloads it like one listed entry.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from damselfly.backends.base import Entry, ObjectStat
from damselfly.core.digests import GIT_BLOB_SHA1
from damselfly.core.errors import SourceProtocolError, UsageError
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HubUrl
from damselfly.download.file_download import download_file
from damselfly.download.hub_files import has_length, output_errors, replace_atomically, same_sha256
from damselfly.download.hub_trees import write_listing
from damselfly.download.jobs import DownloadContext, FileJob, FileResult
from damselfly.download.output_check import check_output_dir
from damselfly.download.tree_download import (
    PlainLayout,
    TreeLayout,
    entry_job,
    safe_output_path,
    validate_listing,
)

HF_REVISION_PARAM = "hf_revision"
MS_REVISION_PARAM = "ms_revision"
METADATA_DIR = ".cache/huggingface"
_ETAG_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class HubLayout(TreeLayout, Protocol):
    def location(self, repo_path: str) -> Path | None:
        """Where a file or folder of the repo is once finished (``None``: not known yet)."""


# -- cache directories, as the hubs' own libraries find them (read at call time) -------------


def default_hf_cache_dir(env: Mapping[str, str]) -> Path:
    """``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return _expand(env[name], env)
    if env.get("HF_HOME"):
        return _expand(env["HF_HOME"], env) / "hub"
    cache = env.get("XDG_CACHE_HOME") or str(_home(env) / ".cache")
    return _expand(cache, env) / "huggingface" / "hub"


def default_ms_cache_dir(env: Mapping[str, str]) -> Path:
    """``MODELSCOPE_CACHE``, else ``~/.cache/modelscope`` (where modelscope 1.40 downloads;
    the ``.../hub`` suffix belongs to SDKs before 1.38)."""
    if env.get("MODELSCOPE_CACHE"):
        return _expand(env["MODELSCOPE_CACHE"], env)
    return _home(env) / ".cache" / "modelscope"


def hf_repo_folder(url: HubUrl) -> str:
    """``models--owner--repo`` (huggingface_hub's ``repo_folder_name``)."""
    return f"{url.repo_type}--{url.owner}--{url.repo}"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _expand(raw: str, env: Mapping[str, str]) -> Path:
    text = raw.replace("~", str(_home(env)), 1) if raw.startswith("~") else raw
    return Path(os.path.expandvars(text))


# -- Hugging Face cache ----------------------------------------------------------------------


class HfCacheLayout:
    """huggingface_hub's cache layout (module docstring); ``url`` names the repo."""

    def __init__(
        self, cache_dir: Path, url: HubUrl, revision_requested: str, *, force: bool = False
    ) -> None:
        _check_revision_name(revision_requested)
        self._cache_dir = cache_dir
        self._url = url.with_path("")
        self._revision = revision_requested
        self._force = force  # force_download: fetch again what the cache holds
        self.repo_dir = cache_dir / hf_repo_folder(url)
        self._commit: str | None = None
        self._claimed: set[str] = set()
        self._listing: Sequence[Entry] = ()

    @property
    def root(self) -> Path:
        return self._cache_dir

    @property
    def commit(self) -> str | None:
        return self._commit

    @property
    def repo_url(self) -> HubUrl:
        return self._url

    @property
    def snapshot_dir(self) -> Path | None:
        return None if self._commit is None else self.repo_dir / "snapshots" / self._commit

    def location(self, repo_path: str) -> Path | None:
        snapshot = self.snapshot_dir
        if snapshot is None:
            return None
        return snapshot / repo_path if repo_path else snapshot

    def listed(self, entries: Sequence[Entry]) -> None:
        self._listing = entries  # trees/<commit>.json, written once the download succeeded

    def output_for(self, entry: Entry) -> Path | None:
        self._adopt(_hf_commit(self._url, entry))
        etag = _etag(self._url, entry)
        _validated_path(self._url, entry)
        blob = safe_output_path(self.repo_dir, f"blobs/{etag}")
        first_claim = etag not in self._claimed
        self._claimed.add(etag)
        if not first_claim or (not self._force and has_length(blob, entry.content_length)):
            return None
        return blob

    def finish(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._adopt(_hf_commit(self._url, entry))
            self._link(_validated_path(self._url, entry), _etag(self._url, entry))
        if self._commit is not None:
            self._write_ref()
        write_listing(self.repo_dir, self._listing)

    def adopt_commit(self, commit: str) -> None:
        """Record the revision's commit when no file was listed (writes the ref)."""
        self._adopt(commit)
        self._write_ref()

    def _adopt(self, commit: str) -> None:
        if self._commit is None:
            self._commit = commit
        elif commit != self._commit:
            reason = f"listing mixes commits {self._commit} and {commit}"
            raise SourceProtocolError(str(self._url), reason)

    def _link(self, repo_path: str, etag: str) -> None:
        assert self._commit is not None
        snapshot = safe_output_path(self.repo_dir, f"snapshots/{self._commit}")
        parent = repo_path.rpartition("/")[0]
        directory = safe_output_path(snapshot, parent) if parent else snapshot
        link = directory / repo_path.rpartition("/")[2]
        target = os.path.relpath(self.repo_dir / "blobs" / etag, directory)
        if link.is_symlink() and os.readlink(link) == target:
            return
        with output_errors(link):
            directory.mkdir(parents=True, exist_ok=True)
            replace_atomically(link, lambda tmp: os.symlink(target, tmp))

    def _write_ref(self) -> None:
        assert self._commit is not None
        if self._revision.lower() == self._commit:
            return
        ref = safe_output_path(self.repo_dir, f"refs/{self._revision}")
        with output_errors(ref):
            if ref.is_file() and ref.read_text(encoding="utf-8") == self._commit:
                return
            ref.parent.mkdir(parents=True, exist_ok=True)
            data = self._commit.encode()  # no newline: huggingface_hub reads it verbatim
            replace_atomically(ref, lambda tmp: tmp.write_bytes(data))


# -- a plain directory, with huggingface_hub's local-dir metadata ---------------------------


class HfLocalDirLayout(PlainLayout):
    """``-O dir`` for hf:// plus ``.cache/huggingface/download/<path>.metadata``."""

    def __init__(self, root: Path, url: HubUrl, *, force: bool = False) -> None:
        super().__init__(root)
        self._url = url.with_path("")
        self._force = force
        self._listing: Sequence[Entry] = ()

    def location(self, repo_path: str) -> Path | None:
        return self.root / repo_path if repo_path else self.root

    def listed(self, entries: Sequence[Entry]) -> None:
        self._listing = entries  # written by finish, as the cache's

    def output_for(self, entry: Entry) -> Path | None:
        target = super().output_for(entry)
        if target is None or not self._tracked(entry):
            return target
        if not self._force and self._current(entry, target):
            return None
        return target

    def finish(self, entries: Sequence[Entry]) -> None:
        if self._listing:
            write_listing(safe_output_path(self.root, METADATA_DIR), self._listing)
        tracked = [e for e in entries if self._tracked(e)]
        if not tracked:
            return
        base = safe_output_path(self.root, METADATA_DIR)
        with output_errors(base):
            base.mkdir(parents=True, exist_ok=True)
            ignore = base / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*")
        for entry in tracked:
            self._write_metadata(entry)

    def _tracked(self, entry: Entry) -> bool:
        """Metadata only for files at their repo path, with a commit and an etag."""
        params = dict(entry.params)
        return (
            isinstance(entry.url, HubUrl)
            and entry.url.path == entry.path
            and _COMMIT_RE.match(params.get(HF_REVISION_PARAM, "")) is not None
            and entry.content_digest is not None
        )

    def _metadata_path(self, entry: Entry) -> Path:
        return safe_output_path(self.root, f"{METADATA_DIR}/download/{entry.path}.metadata")

    def _current(self, entry: Entry, target: Path) -> bool:
        """huggingface_hub's test: same etag, file not modified since the metadata."""
        try:
            lines = self._metadata_path(entry).read_text(encoding="utf-8").splitlines()
            stat = target.stat()
            etag, stamp = lines[1].strip(), float(lines[2])
        except (OSError, ValueError, IndexError):
            return False
        return (
            etag == _etag(self._url, entry)
            and stat.st_size == entry.content_length
            and stat.st_mtime - 1 <= stamp
        )

    def _write_metadata(self, entry: Entry) -> None:
        path = self._metadata_path(entry)
        commit = dict(entry.params)[HF_REVISION_PARAM]
        text = f"{commit}\n{_etag(self._url, entry)}\n{time.time()}\n"
        with output_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# -- ModelScope cache ------------------------------------------------------------------------


class ModelScopeCacheLayout:
    """The modelscope SDK's cache layout (module docstring)."""

    def __init__(self, cache_dir: Path, url: HubUrl, revision_requested: str) -> None:
        _check_revision_name(revision_requested)
        self._cache_dir = cache_dir
        self._url = url.with_path("")
        repo_dir = cache_dir / url.repo_type / f"{url.owner}--{url.repo}"
        self.snapshot_dir = repo_dir / "snapshots" / revision_requested

    @property
    def root(self) -> Path:
        return self._cache_dir

    def location(self, repo_path: str) -> Path | None:
        return self.snapshot_dir / repo_path if repo_path else self.snapshot_dir

    def listed(self, entries: Sequence[Entry]) -> None:
        pass

    def output_for(self, entry: Entry) -> Path | None:
        target = safe_output_path(self.snapshot_dir, _validated_path(self._url, entry))
        if has_length(target, entry.content_length) and same_sha256(target, entry):
            return None
        return target

    def finish(self, entries: Sequence[Entry]) -> None:
        pass


# -- one file into a layout ------------------------------------------------------------------


async def download_hub_file(
    job: FileJob, layout: HubLayout, ctx: DownloadContext
) -> FileResult | None:
    """``job.url`` (one hub file) into ``layout``; ``None`` when it was already there."""
    check_output_dir(layout.root)
    backend = ctx.registry.for_url(job.url)
    stat = await backend.stat(job.url, job.options)
    entry = entry_from_stat(job, stat)
    output = layout.output_for(entry)
    result = None
    if output is not None:
        result = await download_file(entry_job(job, entry, output), ctx)
    layout.finish([entry])
    return result


def entry_from_stat(job: FileJob, stat: ObjectStat) -> Entry:
    """The listing entry a hub file would have had: pinned to the commit the stat saw."""
    url = job.url
    if not isinstance(url, HubUrl) or not url.path:
        raise UsageError(f"{url.redacted()}: not a file of a hub repository")
    pinned = stat.extras.get("hf_commit") or stat.extras.get(MS_REVISION_PARAM)
    name = HF_REVISION_PARAM if url.scheme == "hf" else MS_REVISION_PARAM
    params = ((name, pinned),) if pinned else ()
    return Entry(url, url.path, stat.content_length, stat.content_digest, params)


def _check_revision_name(revision: str) -> None:
    """A revision becomes a path (``refs/<rev>``, ``snapshots/<rev>``): keep it inside."""
    if unsafe_path_reason(revision) is not None:
        raise UsageError(f"revision {revision!r} cannot name a cache directory")


def _validated_path(url: HubUrl, entry: Entry) -> str:
    """The entry's path in the repo (the cache mirrors the repo, not the listed folder)."""
    path = entry.url.path if isinstance(entry.url, HubUrl) else entry.path
    validate_listing(str(url), [path])
    return path


def _etag(url: HubUrl, entry: Entry) -> str:
    digest = entry.content_digest
    if digest is None or digest.algorithm not in ("sha256", GIT_BLOB_SHA1):
        raise SourceProtocolError(str(url), f"no sha256 or git blob id for {entry.path!r}")
    if _ETAG_RE.match(digest.hex) is None:
        raise SourceProtocolError(str(url), f"malformed digest for {entry.path!r}")
    return digest.hex


def _hf_commit(url: HubUrl, entry: Entry) -> str:
    commit = dict(entry.params).get(HF_REVISION_PARAM, "").lower()
    if _COMMIT_RE.match(commit) is None:
        raise SourceProtocolError(str(url), f"{entry.path!r} is not pinned to a commit")
    return commit
