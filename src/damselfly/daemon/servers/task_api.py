"""The local API's task routes, for ``dfctl task|gc|export`` (``docs/manager.md``, "dfctl").

Registered on the local API's application (``LocalApi(routes=task_routes(store))``):

- ``GET /v1/tasks``: every task in the store (least recently used first);
- ``GET /v1/tasks/{id}``: one task, with the number of pieces held;
- ``DELETE /v1/tasks/{id}``: remove it now (409 while a download or upload has it open);
- ``POST /v1/gc``: collect garbage (orphans, then LRU tasks beyond the quota);
- ``POST /v1/tasks/{id}/export`` ``{"output": "/abs/path", "overwrite": false}``: deliver
  a complete task's bytes to a path, atomically, as dfget would.

Changes (delete, gc, export) are served only to the daemon's own user or root, like
downloads: the daemon writes and deletes with its own rights.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from damselfly.core.errors import DamselflyError
from damselfly.daemon.servers.unix_socket import peer_credentials
from damselfly.storage.metadata import TaskMeta
from damselfly.storage.store import Store

TASKS_PATH = "/v1/tasks"
GC_PATH = "/v1/gc"


def task_routes(store: Store) -> Callable[[web.Application], None]:
    api = _TaskApi(store)

    def register(app: web.Application) -> None:
        app.router.add_get(TASKS_PATH, api.list)
        app.router.add_get(TASKS_PATH + "/{task_id}", api.stat)
        app.router.add_delete(TASKS_PATH + "/{task_id}", api.remove)
        app.router.add_post(TASKS_PATH + "/{task_id}/export", api.export)
        app.router.add_post(GC_PATH, api.gc)

    return register


class _TaskApi:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response([_task(meta) for meta in self._store.list_tasks()])

    async def stat(self, request: web.Request) -> web.Response:
        meta = self._store.get_task(request.match_info["task_id"])
        if meta is None:
            return error_answer(404, "no such task")
        held = len(self._store.held_pieces(meta.task_id))
        return web.json_response({**_task(meta), "pieces_held": held})

    async def remove(self, request: web.Request) -> web.Response:
        refused = refuse_other_users(request)
        if refused is not None:
            return refused
        task_id = request.match_info["task_id"]
        if self._store.get_task(task_id) is None:
            return error_answer(404, "no such task")
        if not self._store.remove_task(task_id):
            return error_answer(409, "the task is in use; try again later")
        return web.json_response({"removed": task_id})

    async def gc(self, request: web.Request) -> web.Response:
        refused = refuse_other_users(request)
        if refused is not None:
            return refused
        freed = self._store.collect_garbage()
        return web.json_response({"freed_bytes": freed, "usage_bytes": self._store.usage_bytes()})

    async def export(self, request: web.Request) -> web.Response:
        refused = refuse_other_users(request)
        if refused is not None:
            return refused
        body = await request.json()
        output = body.get("output") if isinstance(body, dict) else None
        if not isinstance(output, str) or not os.path.isabs(output):
            return error_answer(400, "output must be an absolute path")
        task_id = request.match_info["task_id"]
        try:
            method = self._store.deliver(
                task_id, Path(output), overwrite=bool(body.get("overwrite"))
            )
        except DamselflyError as exc:
            return error_answer(exc.http_status if exc.http_status < 500 else 409, str(exc))
        return web.json_response({"output": output, "method": str(method)})


def _task(meta: TaskMeta) -> dict[str, Any]:
    values = dataclasses.asdict(meta)
    values["state"] = str(getattr(meta.state, "value", meta.state))
    return values


def refuse_other_users(request: web.Request) -> web.Response | None:
    caller = peer_credentials(request.transport)
    if caller is None or caller.uid not in (os.geteuid(), 0):
        return error_answer(403, "dfdaemon changes its store only for its own user")
    return None


def error_answer(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
