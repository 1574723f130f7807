"""ModelScope listings: one request's view of a repo (``Target``), and the hub's file
lists parsed and checked as untrusted input (paths, sizes, digests, pinned revisions)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from yarl import URL

from damselfly.backends.base import (
    Entry,
    RequestOptions,
)
from damselfly.backends.modelscope_options import DEFAULT_ENDPOINT, DEFAULT_REVISION
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    SourceProtocolError,
    UsageError,
)
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HubUrl, SourceUrl

CREDENTIAL_HINT = "set --ms-token or MODELSCOPE_API_TOKEN"
COMMIT_RE = re.compile(r"^[0-9a-f]{7,64}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Target:
    """One request's view of a repo: where, as whom, at which revision."""

    url: HubUrl
    endpoint: str
    revision: str
    timeout: float
    insecure: bool
    token: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return str(self.url.with_path(""))

    def api(self, suffix: str, params: Mapping[str, str] | None = None) -> URL:
        base = f"{self.endpoint}/api/v1/{self.url.repo_type}/{self.url.repo_id}{suffix}"
        query = f"?{urlencode(params)}" if params else ""
        return URL(base + query, encoded=True)

    def repo_missing(self) -> str:
        if self.token is None:
            return f"repository not found (or private: {CREDENTIAL_HINT})"
        return "repository not found (or not accessible with the given token)"


@dataclass(frozen=True)
class Listed:
    path: str  # repo-relative
    size: int
    sha256: str | None
    revision: str  # what to fetch it at


def target_of(url: SourceUrl, options: RequestOptions) -> Target:
    if not isinstance(url, HubUrl) or url.scheme != "modelscope":
        raise SourceProtocolError(url.redacted(), "not a modelscope:// URL")
    endpoint = (options.param("ms_endpoint") or DEFAULT_ENDPOINT).rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"ModelScope endpoint {origin_of(endpoint)!r}: expected an http(s) URL")
    revision = options.param("ms_revision") or DEFAULT_REVISION
    if any(ord(c) < 0x20 for c in revision):
        raise UsageError(f"ModelScope revision {revision!r}: contains control characters")
    token = options.param("ms_token") or None
    return Target(url, endpoint, revision, options.timeout, options.insecure, token)


def listing_params(target: Target, root: str, recursive: bool) -> dict[str, str]:
    params = {"Revision": target.revision, "Recursive": str(recursive)}
    return params | ({"Root": root} if root else {})


def envelope_ok(body: object) -> bool:
    if not isinstance(body, dict):
        return False
    code = body.get("Code", 200)
    return str(code) == "200" and body.get("Success", True) is not False


def files_of(target: Target, body: object) -> list[object]:
    data = body.get("Data") if isinstance(body, dict) else None
    files = data.get("Files") if isinstance(data, dict) else data
    if files is None:
        return []
    if not isinstance(files, list):
        raise SourceProtocolError(target.label, "malformed file listing (no Data.Files list)")
    return files


def is_tree(item: object) -> bool:
    return isinstance(item, dict) and item.get("Type") == "tree"


def subdirectory(target: Target, item: object, directory: str) -> str:
    path = checked_path(target, item.get("Path") if isinstance(item, dict) else None)
    if not is_below(path, directory) or path == directory:
        raise bad_listing(target, "directory outside the listed folder", path)
    return path


def parse_listing(target: Target, raw: list[object], root: str) -> list[Listed]:
    """Files below ``root`` from an untrusted listing; every bad entry is an error."""
    listed: dict[str, Listed] = {}
    for item in raw:
        if is_tree(item):
            continue
        entry = parse_file(target, item)
        if not is_below(entry.path, root):
            raise bad_listing(target, "path outside the requested folder", entry.path)
        if entry.path in listed:
            raise bad_listing(target, "duplicate path", entry.path)
        listed[entry.path] = entry
    return sorted(listed.values(), key=lambda e: e.path)


def parse_file(target: Target, item: object) -> Listed:
    if not isinstance(item, dict) or item.get("Type", "blob") != "blob":
        raise SourceProtocolError(target.label, f"malformed listing entry {short(item)}")
    path = checked_path(target, item.get("Path"))
    size = item.get("Size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad_listing(target, f"bad Size {short(size)}", path)
    sha256 = item.get("Sha256") or None
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256_RE.match(sha256)):
        raise bad_listing(target, f"bad Sha256 {short(sha256)}", path)
    commit = item.get("Revision")
    pinned = commit if isinstance(commit, str) and COMMIT_RE.match(commit) else target.revision
    return Listed(path, size, sha256, pinned)


def checked_path(target: Target, path: object) -> str:
    if not isinstance(path, str) or not path:
        raise bad_listing(target, "missing or non-text path", path)
    problem = unsafe_path_reason(path)
    if problem is not None:
        raise bad_listing(target, problem, path)
    return path


def is_below(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


def bad_listing(target: Target, reason: str, path: object) -> SourceProtocolError:
    return SourceProtocolError(target.label, f"untrusted file listing: {reason}: {path!r}")


def entry_of(target: Target, item: Listed) -> Entry:
    root = target.url.path
    relative = item.path
    if root:
        relative = root.rpartition("/")[2] if item.path == root else item.path[len(root) + 1 :]
    return Entry(
        url=target.url.with_path(item.path),
        path=relative,
        content_length=item.size,
        content_digest=Digest("sha256", item.sha256) if item.sha256 else None,
        params=(("ms_revision", item.revision),),
    )


def revision_names(body: object) -> set[str]:
    data = body.get("Data") if isinstance(body, dict) else None
    revision_map = data.get("RevisionMap") if isinstance(data, dict) else None
    names: set[str] = set()
    for kind in ("Branches", "Tags"):
        items = revision_map.get(kind) if isinstance(revision_map, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("Revision"), str):
                names.add(item["Revision"])
    return names


def short(value: Any) -> str:
    return repr(value)[:80]


def origin_of(endpoint: str) -> str:
    """``scheme://host[:port]`` of an endpoint, without userinfo or path."""
    parts = urlsplit(endpoint)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}"
