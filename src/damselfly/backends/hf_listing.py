"""Turn the hub's tree listing (untrusted input from the network) into ``Entry`` values.

A listing decides where files land on disk, so every path is checked before anything else
sees it. Rejected (``SourceProtocolError`` naming the repo and the path):

- not a string, empty, longer than ``MAX_PATH_LENGTH``;
- absolute (``/x``), with a backslash, a NUL or another control character;
- with an empty, ``.`` or ``..`` segment (``a//b``, ``a/./b``, ``../x``, ``a/``);
- not below the folder that was asked for (listing ``sub`` must only return ``sub/...``);
- listed twice (across pages too).

Entries also need a size (``int >= 0``), a git blob id (40 hex), and for LFS files an
``lfs.oid`` sha256 (64 hex) and ``lfs.size``. Directories are skipped.

Each ``Entry`` carries ``params``: ``hf_revision`` = the commit the listing was made at (so
every file of a recursive download is fetched from the same commit), and ``hf_blob_oid`` =
the git blob id (of the pointer, for LFS files; huggingface_hub's tree cache records it).
For non-LFS files the blob id is also the ``content_digest`` (algorithm ``git-blob-sha1``)
so the downloader checks it; LFS files carry their sha256 there instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from damselfly.backends.base import Entry
from damselfly.backends.hf_api import is_git_oid, is_sha256, repo_label
from damselfly.backends.hf_errors import worded
from damselfly.core.digests import GIT_BLOB_SHA1, Digest
from damselfly.core.errors import SourceProtocolError
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HubUrl

REVISION_PARAM = "hf_revision"
BLOB_OID_PARAM = "hf_blob_oid"


class TreeListing:
    """Collects the pages of one tree listing; ``add_page`` raises on the first bad item."""

    def __init__(self, url: HubUrl, commit: str) -> None:
        self._url = url
        self._commit = commit
        self._base = f"{url.path}/" if url.path else ""
        self._entries: dict[str, Entry] = {}

    def add_page(self, page: object) -> None:
        if not isinstance(page, list):
            raise self._error("tree listing is not a JSON list")
        for item in page:
            entry = self._entry(item)
            if entry is not None:
                self._entries[entry.path] = entry

    def entries(self) -> list[Entry]:
        return [self._entries[path] for path in sorted(self._entries)]

    def _entry(self, item: object) -> Entry | None:
        if not isinstance(item, Mapping):
            raise self._error("tree listing item is not an object")
        kind = item.get("type")
        path = item.get("path")
        if kind not in ("file", "directory"):
            raise self._error(f"tree item of unknown type {kind!r}")
        if not isinstance(path, str):
            raise self._error("tree item without a path")
        self._check_path(path)
        if kind == "directory":
            return None
        relative = path[len(self._base) :]
        if relative in self._entries:
            raise self._error(f"listing has path {path!r} twice")
        return self._file_entry(item, path, relative)

    def _file_entry(self, item: Mapping[str, Any], path: str, relative: str) -> Entry:
        size, oid, lfs = item.get("size"), item.get("oid"), item.get("lfs")
        if not _is_size(size) or not is_git_oid(oid):
            raise self._error(f"listing has no valid size or oid for {path!r}")
        params = ((REVISION_PARAM, self._commit), (BLOB_OID_PARAM, str(oid)))
        if lfs is None:
            blob = Digest(GIT_BLOB_SHA1, str(oid))
            return Entry(self._url.with_path(path), relative, size, blob, params)
        if not isinstance(lfs, Mapping) or not is_sha256(lfs.get("oid")):
            raise self._error(f"listing has an invalid lfs oid for {path!r}")
        lfs_size = lfs.get("size", size)
        if not _is_size(lfs_size):
            raise self._error(f"listing has an invalid lfs size for {path!r}")
        digest = Digest("sha256", str(lfs["oid"]))
        return Entry(self._url.with_path(path), relative, lfs_size, digest, params)

    def _check_path(self, path: str) -> None:
        problem = unsafe_path_reason(path)
        if problem is None and not path.startswith(self._base):
            problem = f"is not under the requested folder {self._url.path!r}"
        if problem is not None:
            raise self._error(f"listing has an unsafe path {path!r}: {problem}")

    def _error(self, reason: str) -> SourceProtocolError:
        error = SourceProtocolError(self._url.redacted(), reason)
        return worded(error, f"{repo_label(self._url)}: {reason}")


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
