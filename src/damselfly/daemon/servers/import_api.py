"""The local API's import route, for ``dfctl import PATH --as hf://owner/repo[@rev]``.

``POST /v1/imports`` ``{"path": "/abs/dir", "repo": "hf://owner/repo", "revision": "main"}``
reads the directory with the daemon's rights (so only the daemon's own user or root may ask),
fills the store and announces the tasks (``daemon/imports/importer.py``); the answer says
the commit, the file count, bytes and task ids.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from damselfly.core.errors import DamselflyError
from damselfly.core.urls import HubUrl, parse_url
from damselfly.daemon.imports.importer import RepoImporter
from damselfly.daemon.servers.task_api import error_answer, refuse_other_users

IMPORTS_PATH = "/v1/imports"


def import_routes(importer: RepoImporter) -> Callable[[web.Application], None]:
    async def handle(request: web.Request) -> web.Response:
        refused = refuse_other_users(request)
        if refused is not None:
            return refused
        body = await request.json()
        if not isinstance(body, dict):
            return error_answer(400, "the body must be a JSON object")
        path, repo, revision = body.get("path"), body.get("repo"), body.get("revision") or "main"
        if not isinstance(path, str) or not os.path.isabs(path):
            return error_answer(400, "path must be an absolute path")
        try:
            url = parse_url(str(repo))
            if not isinstance(url, HubUrl) or url.scheme != "hf" or url.path:
                return error_answer(400, f"{repo!r}: expected hf://owner/repo")
            result = await importer.import_repo(Path(path), url, str(revision))
        except DamselflyError as exc:
            return error_answer(exc.http_status if exc.http_status < 500 else 409, str(exc))
        return web.json_response(dataclasses.asdict(result))

    def register(app: web.Application) -> None:
        app.router.add_post(IMPORTS_PATH, handle)

    return register
