"""A repo manifest: what the Hugging Face hub would say about one revision of a repo, kept
so that the repo can be listed and its files stated without the hub (``dfctl import``).

A ``RepoManifest`` holds the repo, the revision it was imported as, the commit, and per file
its path, size, git blob id and (LFS files) sha256: exactly the facts the hub's tree listing
and ``/resolve`` answers give. ``manifest_entries`` and ``manifest_stat`` turn it into the
``Entry`` / ``ObjectStat`` values ``HfBackend`` would have made from the hub's answers (the
listing goes through the same ``TreeListing`` checks), so a download answered from a manifest
computes the same task ids as one answered by the hub: by content (sha256) for LFS files, by
location and blob id for the others.

In the mesh a manifest travels as a task named by its sha256, found through a *pointer*: a
task of fixed length (``POINTER_LENGTH``) whose id depends only on the repo and revision
(``pointer_identity``), holding the manifest's sha256 and length. A node that knows nothing
but ``hf://owner/repo`` and a revision can then fetch both from peers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from damselfly.backends.base import Entry, ObjectStat
from damselfly.backends.hf_api import is_commit, is_git_oid, is_sha256
from damselfly.backends.hf_listing import TreeListing
from damselfly.backends.hf_responses import ResolvedFile, object_stat
from damselfly.core.errors import SourceNotFoundError, SourceProtocolError
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HubUrl

MANIFEST_FORMAT = "damselfly-hf-manifest-v1"
POINTER_LENGTH = 160
_POINTER_MAGIC = "damselfly-hf-pointer-v1"
MAX_MANIFEST_LENGTH = 64 * 1024 * 1024
MANIFEST_PATH = ".damselfly/manifest"  # the path its tasks are shown under (never on a hub)


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    blob_oid: str  # git blob id of what git stores (the LFS pointer file for LFS files)
    sha256: str | None = None  # LFS files only

    def tree_item(self) -> dict[str, Any]:
        """The item the hub's tree listing has for this file."""
        item: dict[str, Any] = {"type": "file", "path": self.path, "size": self.size,
                                "oid": self.blob_oid}  # fmt: skip
        if self.sha256 is not None:
            item["lfs"] = {"oid": self.sha256, "size": self.size}
        return item


@dataclass(frozen=True)
class RepoManifest:
    repo: HubUrl  # the repo, without a path
    revision: str
    commit: str
    files: tuple[ManifestFile, ...]

    def file(self, path: str) -> ManifestFile | None:
        return next((f for f in self.files if f.path == path), None)

    def to_bytes(self) -> bytes:
        body = {"format": MANIFEST_FORMAT, "repo": str(self.repo), "revision": self.revision,
                "commit": self.commit, "files": [f.tree_item() for f in self.files]}  # fmt: skip
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def parse_manifest(data: bytes, repo: HubUrl) -> RepoManifest:
    """A manifest read from the mesh (untrusted): checked field by field, and it must be
    ``repo``'s."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise _bad(repo, "manifest is not JSON") from exc
    if not isinstance(body, Mapping) or body.get("format") != MANIFEST_FORMAT:
        raise _bad(repo, "not a damselfly manifest")
    if body.get("repo") != str(repo.with_path("")):
        raise _bad(repo, "manifest of another repo")
    revision, commit, items = body.get("revision"), body.get("commit"), body.get("files")
    if not isinstance(revision, str) or not isinstance(commit, str) or not is_commit(commit):
        raise _bad(repo, "manifest without a revision and commit")
    if not isinstance(items, list):
        raise _bad(repo, "manifest without files")
    TreeListing(repo.with_path(""), commit).add_page(items)  # the hub listing's checks
    files = tuple(_manifest_file(item) for item in items)
    return RepoManifest(repo.with_path(""), revision, commit.lower(), files)


def _manifest_file(item: Mapping[str, Any]) -> ManifestFile:
    lfs = item.get("lfs")
    sha256 = lfs["oid"] if isinstance(lfs, Mapping) and is_sha256(lfs.get("oid")) else None
    return ManifestFile(item["path"], item["size"], item["oid"], sha256)


def manifest_entries(manifest: RepoManifest, url: HubUrl) -> list[Entry]:
    """What ``HfBackend.list(url)`` answers, from the manifest."""
    base = f"{url.path}/" if url.path else ""
    items = [f.tree_item() for f in manifest.files if f.path.startswith(base)]
    if not items:
        raise SourceNotFoundError(url.redacted(), 404, f"no files under {url.path!r}")
    listing = TreeListing(url, manifest.commit)
    listing.add_page(items)
    return listing.entries()


def manifest_stat(manifest: RepoManifest, url: HubUrl) -> ObjectStat:
    """What ``HfBackend.stat(url)`` answers, from the manifest: an LFS file as the CDN's
    answer (sha256), another as the hub's (ETag = blob id)."""
    found = manifest.file(url.path)
    if found is None:
        raise SourceNotFoundError(url.redacted(), 404, "not in the imported revision")
    if found.sha256 is not None:
        resolved = ResolvedFile("", False, manifest.commit, found.size, True, found.sha256,
                                found.sha256)  # fmt: skip
    else:
        resolved = ResolvedFile("", True, manifest.commit, found.size, True, found.blob_oid, None)
    return object_stat(resolved)


def pointer_identity(repo: HubUrl, revision: str) -> str:
    """The text naming the pointer task of ``repo`` at ``revision`` (task_id_for_text)."""
    return f"{_POINTER_MAGIC}|{repo.scheme}|{repo.repo_type}/{repo.repo_id}|{revision}"


def pointer_bytes(manifest_sha256: str, manifest_length: int) -> bytes:
    text = f"{_POINTER_MAGIC} {manifest_sha256} {manifest_length}\n"
    return text.encode().ljust(POINTER_LENGTH, b" ")


def parse_pointer(data: bytes, repo: HubUrl) -> tuple[str, int]:
    """(manifest sha256, manifest length) from a pointer read from the mesh."""
    parts = data.decode("ascii", errors="replace").split()
    if len(data) != POINTER_LENGTH or len(parts) != 3 or parts[0] != _POINTER_MAGIC:
        raise _bad(repo, "malformed manifest pointer")
    sha256, length = parts[1], parts[2]
    if not is_sha256(sha256) or not length.isdigit() or int(length) > MAX_MANIFEST_LENGTH:
        raise _bad(repo, "malformed manifest pointer")
    return sha256, int(length)


def check_manifest_file(file: ManifestFile) -> None:
    """A file about to be put into a manifest (from a local directory)."""
    problem = unsafe_path_reason(file.path)
    if problem is not None or not is_git_oid(file.blob_oid):
        raise SourceProtocolError(file.path, problem or "no valid blob id")


def _bad(repo: HubUrl, reason: str) -> SourceProtocolError:
    return SourceProtocolError(repo.redacted(), reason)
