"""A Hugging Face hub on loopback: the subset of the real HTTP API that huggingface_hub 2.x and
``HfBackend`` speak, served by aiohttp on loopback.

Routes (``{type}`` is models, datasets or spaces; files of models have no type prefix)::

    GET  {prefix}/api/{type}/{owner}/{repo}                      repo info at main
    GET  {prefix}/api/{type}/{owner}/{repo}/revision/{rev}       repo info: sha, siblings
                                                                 (?blobs=true adds sizes, lfs)
    GET  {prefix}/api/{type}/{owner}/{repo}/tree/{rev}[/{path}]  ?recursive=&expand=&cursor=
                                                                 paginated, Link: rel="next"
    HEAD|GET {prefix}/[datasets/|spaces/]{owner}/{repo}/resolve/{rev}/{path}
        small file: 200 + ETag (git blob id) + X-Repo-Commit, ranges (206)
        LFS file:   302 to the separate CDN host (``LocalCdn``) + X-Linked-Etag (sha256),
                    X-Linked-Size, X-Repo-Commit, ETag (the pointer's blob id); in a repo
                    with ``xet=True`` also X-Xet-Hash and Link: <token route>; rel="xet-auth"
    GET  {prefix}/api/{type}/{owner}/{repo}/xet-read-token/{rev} 403 (counted: a client that
                                                                 tried Xet)

Revisions are branches, tags, full commit ids, in one path segment percent-encoded
(``refs%2Fpr%2F1``) as huggingface_hub sends them; the revision route also takes them
unencoded. Errors carry ``X-Error-Code`` / ``X-Error-Message`` like the real hub:
``RepoNotFound`` (401 without a token, 404 with one: also private repos the token cannot
read), ``GatedRepo`` (files of a gated repo: 401 without a token, 403 with one that has not
accepted the terms), ``RevisionNotFound`` and ``EntryNotFound`` (404); an unknown token is 401
"Invalid credentials in Authorization header" on every route.

It is runtime code because ``damselfly demo`` serves its repo with it; the tests use it too
(``damselfly.testing.hf_hub`` names it ``HfTestHub`` and adds a command line).

Use ``async with LocalHfHub(repos=[HubRepo(...)]) as hub:`` and point clients at
``hub.endpoint``; ``hub.stats`` counts requests per route, per file, bytes, and what the CDN
saw. Knobs: ``page_size`` (tree pagination), ``prefix`` (an endpoint with a path, like a
mirror), ``cdn_url_ttl`` and ``clock`` (signed URL lifetime; ``hub.cdn.rotate_key()`` revokes
every URL handed out), ``tokens`` (valid tokens that open no repo), ``ignore_ranges``
(hub-served files answer 200 to a ranged GET, as olah does).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

from damselfly.core.lifecycle import AsyncResource
from damselfly.demo.hub_cdn import Clock, HubStats, LocalCdn, serve_file
from damselfly.demo.hub_repos import (
    HubRepo,
    RepoSnapshot,
    lfs_pointer,
)

REPO_TYPES = ("models", "datasets", "spaces")
_TIMESTAMP = "2024-01-01T00:00:00.000Z"


class LocalHfHub(AsyncResource):
    def __init__(
        self,
        repos: Iterable[HubRepo] = (),
        *,
        page_size: int = 1000,
        prefix: str = "",
        cdn_url_ttl: float = 3600.0,
        clock: Clock = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        cdn_port: int = 0,
        tokens: Iterable[str] = (),
        ignore_ranges: bool = False,
    ) -> None:
        self.page_size = page_size
        self.prefix = prefix.rstrip("/")
        self.stats = HubStats()
        self.cdn = LocalCdn(self.stats, url_ttl=cdn_url_ttl, clock=clock)
        self._repos: dict[tuple[str, str], HubRepo] = {}
        self._host, self._ports = host, (port, cdn_port)
        self._runners: list[web.AppRunner] = []
        self.origin = ""
        self.tokens = set(tokens)  # valid tokens besides the repos' allowed_tokens
        self.ignore_ranges = ignore_ranges  # hub-served files answer 200 to Range (like olah)
        for repo in repos:
            self.add_repo(repo)

    @property
    def endpoint(self) -> str:
        return self.origin + self.prefix

    def add_repo(self, repo: HubRepo) -> None:
        if repo.repo_type not in REPO_TYPES:
            raise ValueError(f"repo type {repo.repo_type!r} is not one of {REPO_TYPES}")
        self._repos[(repo.repo_type, repo.repo_id)] = repo

    async def start(self) -> None:
        hub_app = web.Application()
        hub_app.router.add_route("*", "/{tail:.*}", self._handle)
        self.origin = await self._serve(hub_app, self._ports[0])
        self.cdn.base_url = await self._serve(self.cdn.app(), self._ports[1])

    async def aclose(self) -> None:
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def _serve(self, app: web.Application, port: int) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self._host, port).start()
        bound_port = runner.addresses[0][1]
        return f"http://{self._host}:{bound_port}"

    # -- dispatch ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path.split("?", 1)[0]
        if not raw.startswith(self.prefix + "/"):
            return _error(404, "", "Not Found")
        segments = [unquote(part) for part in raw[len(self.prefix) + 1 :].split("/")]
        if segments[0] == "api" and request.method == "GET":
            return await self._api(request, segments[1:])
        if request.method in ("GET", "HEAD"):
            return await self._resolve(request, segments)
        return _error(405, "", "Method Not Allowed")

    async def _api(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        if len(parts) < 3 or parts[0] not in REPO_TYPES:
            return _error(404, "", "Not Found")
        repo_type, repo_id, rest = parts[0], f"{parts[1]}/{parts[2]}", parts[3:]
        if not rest:
            return self._repo_info(request, repo_type, repo_id, "main")
        if rest[0] == "revision" and len(rest) >= 2:
            return self._repo_info(request, repo_type, repo_id, "/".join(rest[1:]))
        if rest[0] == "xet-read-token":
            self.stats.record("hub", "GET /api/xet-read-token", request)
            return _error(403, "", "this test hub does not serve Xet CAS")
        if rest[0] == "tree" and len(rest) >= 2:
            path = "/".join(p for p in rest[2:] if p)
            return self._tree(request, repo_type, repo_id, rest[1], path)
        return _error(404, "", "Not Found")

    async def _resolve(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        repo_type = "models"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return _error(404, "", "Not Found")
        repo_id, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        self.stats.record("hub", f"{request.method} /resolve", request)
        repo = self._repos.get((repo_type, repo_id))
        denied = self._check_access(request, repo, files=True)
        if denied is not None or repo is None:
            return denied or _error(404, "RepoNotFound", "Repository not found")
        snap = repo.snapshot(revision)
        if snap is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        file = snap.files.get(path)
        if file is None:
            return _error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        self.stats.resolve_hits[path] += 1
        headers = {"X-Repo-Commit": snap.commit}
        if file.sha256 is None:
            headers["ETag"] = f'"{file.blob_oid}"'
            honour = not self.ignore_ranges
            return await serve_file(request, file, headers, self.stats, "hub", honour_ranges=honour)
        location = self.cdn.url_for(f"{repo_type}/{repo_id}", file)
        headers.update(
            {
                "Location": location,
                "X-Linked-Etag": f'"{file.sha256}"',
                "X-Linked-Size": str(file.size),
                "ETag": f'"{file.blob_oid}"',
            }
        )
        if repo.xet:
            token_route = f"{self.endpoint}/api/{repo_type}/{repo_id}/xet-read-token/{snap.commit}"
            headers["X-Xet-Hash"] = xet_hash(file.sha256)
            headers["Link"] = f'<{token_route}>; rel="xet-auth"'
        body = None if request.method == "HEAD" else f"Found. Redirecting to {location}"
        return web.Response(status=302, headers=headers, text=body)

    # -- access --------------------------------------------------------------------------

    def _valid_tokens(self) -> set[str]:
        allowed = {token for repo in self._repos.values() for token in repo.allowed_tokens}
        return allowed | self.tokens

    def _check_access(
        self, request: web.Request, repo: HubRepo | None, *, files: bool
    ) -> web.Response | None:
        header = request.headers.get("Authorization")
        token = header.removeprefix("Bearer ") if header else None
        if header is not None and (token == header or token not in self._valid_tokens()):
            return _error(401, "", "Invalid credentials in Authorization header")
        status = 401 if token is None else 404
        if repo is None or (repo.private and token not in repo.allowed_tokens):
            return _error(status, "RepoNotFound", "Repository not found")
        if files and repo.gated and token not in repo.allowed_tokens:
            status = 401 if token is None else 403
            message = f"Access to model {repo.repo_id} is restricted. You must have access to it."
            return _error(status, "GatedRepo", message)
        return None

    def _lookup(
        self, request: web.Request, repo_type: str, repo_id: str, revision: str
    ) -> tuple[HubRepo, RepoSnapshot] | web.Response:
        repo = self._repos.get((repo_type, repo_id))
        denied = self._check_access(request, repo, files=False)
        if denied is not None or repo is None:
            return denied or _error(404, "RepoNotFound", "Repository not found")
        snap = repo.snapshot(revision)
        if snap is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, snap

    # -- API -----------------------------------------------------------------------------

    def _repo_info(
        self, request: web.Request, repo_type: str, repo_id: str, revision: str
    ) -> web.Response:
        self.stats.record("hub", "GET /api/revision", request)
        found = self._lookup(request, repo_type, repo_id, revision)
        if isinstance(found, web.Response):
            return found
        repo, snap = found
        blobs = request.query.get("blobs", "").lower() == "true"
        return web.json_response(_repo_info_body(repo, snap, blobs=blobs))

    def _tree(
        self, request: web.Request, repo_type: str, repo_id: str, revision: str, path: str
    ) -> web.Response:
        self.stats.record("hub", "GET /api/tree", request)
        found = self._lookup(request, repo_type, repo_id, revision)
        if isinstance(found, web.Response):
            return found
        repo, snap = found
        recursive = request.query.get("recursive", "").lower() == "true"
        expand = request.query.get("expand", "").lower() == "true"
        override = repo.tree_override
        if override is not None:
            return self._page(request, override) if isinstance(override, list) else _raw(override)
        if path and path not in snap.directories():
            return _error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        entries = _tree_entries(snap, path, recursive=recursive, expand=expand, xet=repo.xet)
        return self._page(request, entries)

    def _page(self, request: web.Request, entries: list[dict[str, Any]]) -> web.Response:
        cursor_text = request.query.get("cursor", "0")
        cursor = int(cursor_text) if cursor_text.isdigit() else 0
        end = cursor + self.page_size
        response = web.json_response(entries[cursor:end])
        if end < len(entries):
            query = {k: v for k, v in request.query.items() if k != "cursor"} | {"cursor": end}
            next_url = f"{self.origin}{request.raw_path.split('?', 1)[0]}?{urlencode(query)}"
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response


def _raw(body: object) -> web.Response:
    return web.json_response(body)


def _error(status: int, code: str, message: str) -> web.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=headers)


def _repo_info_body(repo: HubRepo, snap: RepoSnapshot, *, blobs: bool) -> dict[str, Any]:
    siblings: list[dict[str, Any]] = []
    for file in snap.files.values():
        sibling: dict[str, Any] = {"rfilename": file.path}
        if blobs:
            sibling.update(size=file.size, blobId=file.blob_oid)
            if file.sha256 is not None:
                pointer = len(lfs_pointer(file.sha256, file.size))
                sibling["lfs"] = {"sha256": file.sha256, "size": file.size, "pointerSize": pointer}
        siblings.append(sibling)
    owner = repo.repo_id.split("/", 1)[0]
    return {
        "_id": snap.commit[:24],
        "id": repo.repo_id,
        "author": owner,
        "sha": snap.commit,
        "lastModified": _TIMESTAMP,
        "createdAt": _TIMESTAMP,
        "private": repo.private,
        "gated": "auto" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(f.size for f in snap.files.values()),
    }


def xet_hash(sha256: str) -> str:
    """The Xet hash the test hub advertises for an LFS file (64 hex digits, not a real one)."""
    return hashlib.sha256(f"xet:{sha256}".encode()).hexdigest()


def _tree_entries(
    snap: RepoSnapshot, path: str, *, recursive: bool, expand: bool, xet: bool = False
) -> list[dict[str, Any]]:
    base = f"{path}/" if path else ""

    def wanted(candidate: str) -> bool:
        if not candidate.startswith(base):
            return False
        return recursive or "/" not in candidate[len(base) :]

    entries: list[dict[str, Any]] = [
        {"type": "directory", "oid": _tree_oid(snap.commit, d), "size": 0, "path": d}
        for d in snap.directories()
        if wanted(d)
    ]
    for file in snap.files.values():
        if wanted(file.path):
            entry: dict[str, Any] = {
                "type": "file",
                "oid": file.blob_oid,
                "size": file.size,
                "path": file.path,
            }
            if file.sha256 is not None:
                pointer = len(lfs_pointer(file.sha256, file.size))
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": pointer}
                if xet:
                    entry["xetHash"] = xet_hash(file.sha256)
            entries.append(entry)
    if expand:
        for entry in entries:
            entry["lastCommit"] = {"id": snap.commit, "title": "Upload", "date": _TIMESTAMP}
    return sorted(entries, key=lambda e: str(e["path"]))


def _tree_oid(commit: str, directory: str) -> str:
    return hashlib.sha1(f"{commit}:{directory}".encode(), usedforsecurity=False).hexdigest()
