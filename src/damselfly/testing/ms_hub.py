"""A ModelScope Hub of our own, for tests: the routes the real ``modelscope`` SDK uses.

Routes (read from modelscope 1.40 / modelscope-hub 0.5 and observed on the wire)::

    GET      /api/v1/models/{owner}/{repo}/repo/files?Revision=&Recursive=True[&Root=]
             file listing; answers at most ``listing_cap`` entries (the live hub: 3000)
    GET      /api/v1/datasets/{owner}/{repo}/repo/tree?Revision=&Recursive=&PageNumber=&PageSize=
             dataset listing, paginated (same entry shape)
    GET|HEAD /api/v1/{models|datasets}/{owner}/{repo}/repo?Revision=&FilePath=
             one file; ``Range`` answered 206 (or, like the live hub, 200 + Content-Range with
             ``ranged_status=200``); with ``redirect_lfs`` large files 302 to a second port ("CDN")
    GET      /api/v1/{models|datasets}/{owner}/{repo}/revisions   branches and tags
    GET      /api/v1/{models|datasets}/{owner}/{repo}             repository info
    GET      /api/v1/repos/internalAccelerationInfo               the SDK's region probe

Every answer is the hub's JSON envelope ``{Code, Message, RequestId, Success, Data}``; errors
use the live hub's business codes (10010205001 "record not found", 10010101004 unauthorized).
A private repo needs the hub's token as ``Authorization: Bearer`` or cookie ``m_session_id``.

Repositories and their history: ``ms_repos.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import ssl
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from damselfly.core.lifecycle import AsyncResource
from damselfly.testing.ms_repos import BASE_TIME, MsRepo, RepoHistory, listing_entries

__all__ = ["BASE_TIME", "DEFAULT_TOKEN", "HubRequest", "MsRepo", "MsTestHub", "main"]

NOT_FOUND_CODE = 10010205001
NOT_FOUND_MESSAGE = "获取模型目录树失败，信息：record not found"  # noqa: RUF001 (live text)
UNAUTHORIZED_CODE = 10010101004
UNAUTHORIZED_MESSAGE = "get model info failed, err: unauthorized permission"
DEFAULT_TOKEN = "ms-test-token"
_UNSATISFIABLE = (-1, -1)


@dataclass(frozen=True)
class HubRequest:
    route: str
    method: str
    host: str
    path_qs: str
    authorization: str | None
    session_cookie: str | None
    range: str | None


class MsTestHub(AsyncResource):
    """``async with MsTestHub(repos={"owner/name": {"a.txt": b"..."}}) as hub: hub.endpoint``."""

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, bytes] | MsRepo] | None = None,
        *,
        datasets: Mapping[str, Mapping[str, bytes] | MsRepo] | None = None,
        token: str = DEFAULT_TOKEN,
        listing_cap: int = 3000,
        ranged_status: int = 206,
        redirect_lfs: bool = False,
        lfs_threshold: int = 1024 * 1024,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.token = token
        self.listing_cap = listing_cap
        self.ranged_status = ranged_status
        self.redirect_lfs = redirect_lfs
        self.lfs_threshold = lfs_threshold
        self.honour_ranges = True  # False: answer every Range with the whole file (200)
        self.short_bodies = False  # True: ranged answers lose their last byte
        self.counters: Counter[str] = Counter()
        self.bytes_served = 0
        self.requests: list[HubRequest] = []
        # Replace a listing's answer: (repo_type, repo_id) -> (status, JSON body).
        self.listing_overrides: dict[tuple[str, str], tuple[int, object]] = {}
        self._repos: dict[tuple[str, str], RepoHistory] = {}
        for repo_type, specs in (("models", repos or {}), ("datasets", datasets or {})):
            for repo_id, spec in specs.items():
                self.add_repo(repo_id, spec, repo_type=repo_type)
        self._host, self._port = host, port
        self._ssl_context = ssl_context  # both ports speak TLS (https://) when given
        self._runner: web.AppRunner | None = None
        self.endpoint = self.cdn_endpoint = ""

    # -- test controls -------------------------------------------------------------------

    def add_repo(
        self, repo_id: str, spec: Mapping[str, bytes] | MsRepo, *, repo_type: str = "models"
    ) -> None:
        repo = spec if isinstance(spec, MsRepo) else MsRepo(files=spec)
        self._repos[(repo_type, repo_id)] = RepoHistory(repo_id, repo)

    def push(self, repo_id: str, files: Mapping[str, bytes], *, repo_type: str = "models") -> str:
        """Move master to a new commit with ``files``; returns the commit id."""
        return self._repos[(repo_type, repo_id)].push(files)

    def commit_of(self, repo_id: str, revision: str = "master", repo_type: str = "models") -> str:
        commit = self._repos[(repo_type, repo_id)].resolve(revision)
        assert commit is not None, revision
        return commit.id

    def requests_for(self, route: str) -> list[HubRequest]:
        return [r for r in self.requests if r.route == route]

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        context = self._ssl_context
        api = web.TCPSite(self._runner, self._host, self._port, ssl_context=context)
        cdn = web.TCPSite(self._runner, self._host, 0, ssl_context=context)
        await api.start()
        await cdn.start()
        (_, api_port, *_), (_, cdn_port, *_) = self._runner.addresses
        scheme = "https" if context is not None else "http"
        self.endpoint = f"{scheme}://{self._host}:{api_port}"
        self.cdn_endpoint = f"{scheme}://{self._host}:{cdn_port}"

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application()
        prefix = "/api/v1/{repo_type:models|datasets}/{owner}/{name}"
        app.router.add_get("/api/v1/repos/internalAccelerationInfo", self._acceleration)
        app.router.add_get(prefix + "/repo/files", self._listing)
        app.router.add_get(prefix + "/repo/tree", self._listing)
        app.router.add_route("*", prefix + "/repo", self._file)
        app.router.add_get(prefix + "/revisions", self._revisions)
        app.router.add_get(prefix, self._info)
        app.router.add_route("*", "/cdn/{sha256}", self._cdn)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    # -- handlers --------------------------------------------------------------------------

    def _record(self, route: str, request: web.Request) -> None:
        self.counters[route] += 1
        self.requests.append(
            HubRequest(
                route=route,
                method=request.method,
                host=request.host,
                path_qs=request.path_qs,
                authorization=request.headers.get("Authorization"),
                session_cookie=request.cookies.get("m_session_id"),
                range=request.headers.get("Range"),
            )
        )

    async def _acceleration(self, request: web.Request) -> web.Response:
        self._record("acceleration", request)
        return _ok({"InternalRegionQueryAddress": ""})

    async def _listing(self, request: web.Request) -> web.Response:
        route = "tree" if request.path.endswith("/tree") else "files"
        self._record(route, request)
        repo = self._authorized(request)
        if isinstance(repo, web.Response):
            return repo
        override = self.listing_overrides.get((request.match_info["repo_type"], repo.repo_id))
        if override is not None:
            return web.json_response(override[1], status=override[0])
        commit = repo.resolve(request.query.get("Revision", "master"))
        if commit is None:
            return _not_found()
        recursive = request.query.get("Recursive", "false").lower() == "true"
        root = request.query.get("Root", "").strip("/")
        entries = listing_entries(commit, root, recursive, self.lfs_threshold)
        if entries is None:
            return _not_found()
        return _ok({"Files": self._page(route, entries, request.query)})

    def _page(self, route: str, entries: list[dict[str, Any]], query: Mapping[str, str]) -> Any:
        if route == "files":
            return entries[: self.listing_cap]
        size = int(query.get("PageSize", "100"))
        start = (int(query.get("PageNumber", "1")) - 1) * size
        return entries[start : start + size]

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self._record("file", request)
        repo = self._authorized(request)
        if isinstance(repo, web.Response):
            return repo
        path = request.query.get("FilePath")
        if not path:
            return _error(400, 10010000400, "FilePath is required")
        commit = repo.resolve(request.query.get("Revision", "master"))
        if commit is None or path not in commit.files:
            return _not_found()
        data = commit.files[path]
        if self.redirect_lfs and len(data) >= self.lfs_threshold:
            sha256 = hashlib.sha256(data).hexdigest()
            raise web.HTTPFound(f"{self.cdn_endpoint}/cdn/{sha256}?Expires=9999999999")
        return self._bytes(request, data, self.ranged_status)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self._record("cdn", request)
        wanted = request.match_info["sha256"]
        for repo in self._repos.values():
            for commit in repo.commits:
                for data in commit.files.values():
                    if hashlib.sha256(data).hexdigest() == wanted:
                        return self._bytes(request, data, 206)
        return web.Response(status=404, text="NoSuchKey")

    def _bytes(self, request: web.Request, data: bytes, ranged_status: int) -> web.Response:
        span = _parse_range(request.headers.get("Range"), len(data))
        if not self.honour_ranges:
            span = None
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        status, body = 200, memoryview(data)
        if span == _UNSATISFIABLE:
            headers["Content-Range"] = f"bytes */{len(data)}"
            return web.Response(status=416, headers=headers)
        if span is not None:
            first, last = span
            status, body = ranged_status, body[first : last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            if self.short_bodies:
                body = body[:-1]
        if request.method != "HEAD":
            self.bytes_served += len(body)
        return web.Response(status=status, body=bytes(body), headers=headers)

    async def _revisions(self, request: web.Request) -> web.Response:
        self._record("revisions", request)
        repo = self._authorized(request)
        if isinstance(repo, web.Response):
            return repo
        by_id = {c.id: c for c in repo.commits}
        master = repo.commits[-1]
        branches = [{"Revision": "master", "CreatedAt": master.created_at}]
        tags = [{"Revision": n, "CreatedAt": by_id[c].created_at} for n, c in repo.tags.items()]
        return _ok({"RevisionMap": {"Branches": branches, "Tags": tags}})

    async def _info(self, request: web.Request) -> web.Response:
        self._record("info", request)
        repo = self._authorized(request)
        if isinstance(repo, web.Response):
            return repo
        owner, name = repo.repo_id.split("/", 1)
        return _ok({"Name": name, "Path": owner, "Private": repo.private})

    async def _unknown(self, request: web.Request) -> web.Response:
        self._record("unknown", request)
        return _error(404, NOT_FOUND_CODE, "not found")

    def _authorized(self, request: web.Request) -> RepoHistory | web.Response:
        info = request.match_info
        repo = self._repos.get((info["repo_type"], f"{info['owner']}/{info['name']}"))
        if repo is None:
            return _not_found()
        if repo.private and self.token not in _presented_tokens(request):
            return _error(401, UNAUTHORIZED_CODE, UNAUTHORIZED_MESSAGE)
        return repo


def _presented_tokens(request: web.Request) -> set[str]:
    found = {request.cookies.get("m_session_id", "")}
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        found.add(value)
    return found - {""}


def _parse_range(value: str | None, length: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> (first, last); multi-range and junk -> None;
    a range past the end -> ``_UNSATISFIABLE``."""
    unit, _, spec = (value or "").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or "-" not in spec:
        return None
    first_text, _, last_text = spec.strip().partition("-")
    if not (first_text or last_text).isdigit() or (last_text and not last_text.isdigit()):
        return None
    if not first_text:
        first, last = max(0, length - int(last_text)), length - 1
    else:
        first = int(first_text)
        last = min(int(last_text), length - 1) if last_text else length - 1
    if first >= length or first > last:
        return _UNSATISFIABLE
    return first, last


def _ok(data: object) -> web.Response:
    body = {"Code": 200, "Data": data, "Message": "success", "RequestId": "t", "Success": True}
    return web.json_response(body)


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"Code": code, "Message": message, "RequestId": "t", "Success": False}
    return web.json_response(body, status=status)


def _not_found() -> web.Response:
    return _error(404, NOT_FOUND_CODE, NOT_FOUND_MESSAGE)


# -- command line: python -m damselfly.testing.ms_hub --repo-dir DIR --port N --------------


def load_repo_dir(root: Path) -> tuple[dict[str, MsRepo], dict[str, MsRepo]]:
    """``DIR/{models,datasets}/<owner>/<name>/...`` (or ``DIR/<owner>/<name>/...`` for models)."""
    typed = (root / "models").is_dir() or (root / "datasets").is_dir()
    bases = {"models": root}
    if typed:
        bases = {"models": root / "models", "datasets": root / "datasets"}
    found: dict[str, dict[str, MsRepo]] = {"models": {}, "datasets": {}}
    for repo_type, base in bases.items():
        for repo_dir in sorted(base.glob("*/*")):
            if repo_dir.is_dir():
                files = {
                    p.relative_to(repo_dir).as_posix(): p.read_bytes()
                    for p in sorted(repo_dir.rglob("*"))
                    if p.is_file()
                }
                found[repo_type][f"{repo_dir.parent.name}/{repo_dir.name}"] = MsRepo(files)
    return found["models"], found["datasets"]


async def _serve(args: argparse.Namespace) -> None:
    models, datasets = load_repo_dir(Path(args.repo_dir))
    for repo_id in args.private:
        models[repo_id] = MsRepo(models[repo_id].files, private=True)
    hub = MsTestHub(models, datasets=datasets, token=args.token, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with hub:
        sys.stdout.write(json.dumps({"endpoint": hub.endpoint, "models": sorted(models)}) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ModelScope test hub (for tests and benches)")
    parser.add_argument("--repo-dir", required=True, help="DIR/{models,datasets}/<owner>/<name>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="token private repos require")
    parser.add_argument("--private", action="append", default=[], help="owner/name (repeat)")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
