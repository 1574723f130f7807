"""A local copy of a hub repo as an hf:// origin: ``dfctl import PATH --as hf://owner/repo``.

``manifest_from_directory`` reads a staging copy (a ``git clone``, a ``hf download
--local-dir`` folder, a cache snapshot ``.../snapshots/<commit>``) into a ``RepoManifest``
with the ids the hub would report, every byte hashed here:

- which files are LFS: what huggingface_hub's local-dir metadata
  (``.cache/huggingface/download/<path>.metadata``: commit, ETag) says, checked against the
  bytes; else the ``filter=lfs`` patterns of the copy's ``.gitattributes``; and every file of
  10 MiB or more (the hub keeps no larger plain git file);
- the commit: the revision when it is a full commit id, else the one the local-dir metadata or
  a ``snapshots/<commit>`` folder name gives, else a stand-in derived from the content (sha1
  over the paths and blob ids; said so in the answer), so the same copy always gets the same.

``.git/`` and ``.cache/huggingface/`` are not part of the repo. ``StagedHfBackend`` then
answers ``list`` and ``stat`` from the manifest and ``get`` from the files, so the ordinary
download path stores the pieces under the task ids a hub download would have used.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from damselfly.backends.base import Entry, ObjectStat, RequestOptions
from damselfly.backends.hf_api import is_commit, is_sha256
from damselfly.backends.hf_manifest import (
    ManifestFile,
    RepoManifest,
    check_manifest_file,
    manifest_entries,
    manifest_stat,
)
from damselfly.core.digests import git_blob_sha1
from damselfly.core.errors import SourceNotFoundError, SourceProtocolError, UsageError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HubUrl, SourceUrl

LFS_MIN_SIZE = 10 * 1024 * 1024  # the hub stores larger files in LFS
_CHUNK = 1024 * 1024
_SKIPPED_DIRS = (".git", ".cache/huggingface")


def manifest_from_directory(root: Path, repo: HubUrl, revision: str) -> tuple[RepoManifest, bool]:
    """The manifest of the copy at ``root``, and whether its commit is a stand-in. Blocking
    (hashes every file): run it in a worker thread."""
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    lfs_patterns = _lfs_patterns(root / ".gitattributes")
    metadata = {path: _local_dir_metadata(root, path) for path in _repo_paths(root)}
    files = tuple(
        _manifest_file(root, path, lfs_patterns, etag)
        for path, (_, etag) in sorted(metadata.items())
    )
    if not files:
        raise UsageError(f"{root}: no files to import")
    commit = _commit(root, revision, {c for c, _ in metadata.values() if c})
    stand_in = commit is None
    if commit is None:
        commit = _stand_in_commit(repo, files)
    return RepoManifest(repo.with_path(""), revision, commit, files), stand_in


class StagedHfBackend:
    """hf:// answered from a manifest and the directory it was made from."""

    def __init__(self, manifest: RepoManifest, root: Path) -> None:
        self._manifest = manifest
        self._root = root

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        return manifest_stat(self._manifest, _hub_url(url))

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return self._manifest.file(_hub_url(url).path) is not None

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        return manifest_entries(self._manifest, _hub_url(url))

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        hub_url = _hub_url(url)
        found = self._manifest.file(hub_url.path)
        if found is None:
            raise SourceNotFoundError(url.redacted(), 404, "not in the imported copy")
        start = 0 if byte_range is None else byte_range.start
        length = found.size - start if byte_range is None else byte_range.length
        with (self._root / found.path).open("rb") as handle:
            handle.seek(start)
            while length > 0:
                chunk = await asyncio.to_thread(handle.read, min(_CHUNK, length))
                if not chunk:
                    raise SourceProtocolError(url.redacted(), "the local copy changed size")
                length -= len(chunk)
                yield chunk

    async def aclose(self) -> None:
        return None


def _hub_url(url: SourceUrl) -> HubUrl:
    if not isinstance(url, HubUrl) or url.scheme != "hf":
        raise SourceProtocolError(url.redacted(), "not an hf:// URL")
    return url


def _repo_paths(root: Path) -> Iterator[str]:
    for directory, subdirs, names in os.walk(root):
        relative = Path(directory).relative_to(root).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        subdirs[:] = sorted(d for d in subdirs if f"{prefix}{d}" not in _SKIPPED_DIRS)
        for name in sorted(names):
            if (Path(directory) / name).is_file():
                yield f"{prefix}{name}"


def _lfs_patterns(gitattributes: Path) -> list[str]:
    try:
        lines = gitattributes.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [
        fields[0]
        for fields in (line.split() for line in lines)
        if len(fields) > 1 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]
    ]


def _is_lfs_by_pattern(path: str, patterns: list[str]) -> bool:
    """gitattributes matching, as far as hub repos use it: a pattern without ``/`` matches
    the file name at any depth, one with ``/`` the path from the root."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if "/" in pattern.strip("/"):
            if fnmatch.fnmatchcase(path, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern.strip("/")):
            return True
    return False


def _local_dir_metadata(root: Path, path: str) -> tuple[str, str]:
    """(commit, etag) from huggingface_hub's local-dir metadata of ``path``, or ("", "")."""
    meta = root / ".cache" / "huggingface" / "download" / f"{path}.metadata"
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return "", ""
    if len(lines) < 2 or not is_commit(lines[0].strip()):
        return "", ""
    return lines[0].strip().lower(), lines[1].strip().strip('"').lower()


def _manifest_file(root: Path, path: str, lfs_patterns: list[str], etag: str) -> ManifestFile:
    sha256, blob_oid, size = _hashes(root / path)
    lfs = size >= LFS_MIN_SIZE or _is_lfs_by_pattern(path, lfs_patterns)
    if etag:
        if etag not in (sha256, blob_oid):
            raise UsageError(f"{root / path}: its bytes do not match the ETag its metadata names")
        lfs = is_sha256(etag)
    if lfs:
        pointer = _lfs_pointer(sha256, size)
        found = ManifestFile(path, size, git_blob_sha1(pointer), sha256)
    else:
        found = ManifestFile(path, size, blob_oid)
    check_manifest_file(found)
    return found


def _hashes(path: Path) -> tuple[str, str, int]:
    """(sha256, git blob id, size) in one pass."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    read = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
            read += len(chunk)
    if read != size:
        raise UsageError(f"{path}: changed while it was read")
    return sha256.hexdigest(), blob.hexdigest(), size


def _lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _commit(root: Path, revision: str, from_metadata: set[str]) -> str | None:
    if is_commit(revision):
        return revision.lower()
    if len(from_metadata) == 1:
        return next(iter(from_metadata))
    resolved = root.resolve()
    if resolved.parent.name == "snapshots" and is_commit(resolved.name):
        return resolved.name.lower()
    return None


def _stand_in_commit(repo: HubUrl, files: tuple[ManifestFile, ...]) -> str:
    text = "\n".join([f"damselfly-import {repo.repo_type}/{repo.repo_id}"]
                     + [f"{f.path} {f.blob_oid}" for f in files])  # fmt: skip
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
