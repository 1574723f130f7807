"""Repositories of the ModelScope test hub: linear history, tags, and listing entries.

History is linear: each tag given is an older commit, master is the newest; ``push`` adds a
commit. A file's listed ``Revision`` is the commit that last changed it, as on the live hub.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BASE_TIME = 1_700_000_000


@dataclass(frozen=True)
class MsRepo:
    """A repository: master's files, older tagged versions, and whether it is private."""

    files: Mapping[str, bytes]
    tags: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    private: bool = False


@dataclass
class Commit:
    id: str
    files: dict[str, bytes]
    changed_in: dict[str, str]  # path -> the commit that last changed it
    created_at: int


class RepoHistory:
    def __init__(self, repo_id: str, spec: MsRepo) -> None:
        self.repo_id = repo_id
        self.private = spec.private
        self.commits: list[Commit] = []
        self.tags: dict[str, str] = {}
        for name, files in spec.tags.items():
            self.tags[name] = self.push(files)
        self.push(spec.files)

    def push(self, files: Mapping[str, bytes]) -> str:
        previous = self.commits[-1] if self.commits else None
        seed = f"{self.repo_id}\0{len(self.commits)}\0" + "".join(
            f"{p}\0{hashlib.sha256(b).hexdigest()}\0" for p, b in sorted(files.items())
        )
        commit_id = hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()
        changed_in = {
            path: previous.changed_in[path]
            if previous is not None and previous.files.get(path) == data
            else commit_id
            for path, data in files.items()
        }
        created = BASE_TIME + 60 * len(self.commits)
        self.commits.append(Commit(commit_id, dict(files), changed_in, created))
        return commit_id

    def resolve(self, revision: str) -> Commit | None:
        if revision == "master":
            return self.commits[-1]
        wanted = self.tags.get(revision, revision)
        if len(wanted) < 7:
            return None
        matches = [c for c in self.commits if c.id.startswith(wanted)]
        return matches[0] if len(matches) == 1 else None


def listing_entries(
    commit: Commit, root: str, recursive: bool, lfs_threshold: int
) -> list[dict[str, Any]] | None:
    """Listing entries below ``root`` (files and directories), or None if it does not exist."""
    if root in commit.files:
        return [file_entry(commit, root, lfs_threshold)]
    prefix = f"{root}/" if root else ""
    below = [p for p in commit.files if p.startswith(prefix)]
    if root and not below:
        return None
    files = [p for p in below if recursive or "/" not in p[len(prefix) :]]
    dirs: set[str] = set()
    for path in below:
        parents = path[len(prefix) :].split("/")[:-1]
        deepest = len(parents) if recursive else min(len(parents), 1)
        dirs.update(prefix + "/".join(parents[:depth]) for depth in range(1, deepest + 1))
    entries = [file_entry(commit, p, lfs_threshold) for p in files]
    entries += [dir_entry(d) for d in dirs]
    return sorted(entries, key=lambda e: str(e["Path"]))


def file_entry(commit: Commit, path: str, lfs_threshold: int) -> dict[str, Any]:
    data = commit.files[path]
    return {
        "CommitMessage": "upload",
        "CommittedDate": commit.created_at,
        "CommitterName": "damselfly-test",
        "InCheck": False,
        "IsLFS": len(data) >= lfs_threshold,
        "Mode": "33188",
        "Name": path.rsplit("/", 1)[-1],
        "Path": path,
        "Revision": commit.changed_in[path],
        "Sha256": hashlib.sha256(data).hexdigest(),
        "Size": len(data),
        "Type": "blob",
    }


def dir_entry(path: str) -> dict[str, Any]:
    name = path.rsplit("/", 1)[-1]
    entry: dict[str, Any] = {"IsLFS": False, "Mode": "16384", "Name": name, "Path": path}
    return entry | {"Sha256": "", "Size": 0, "Type": "tree"}
