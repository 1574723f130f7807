"""dfctl's local commands: the daemon's store over its local API socket.

``task ls``, ``task stat ID``, ``task rm ID``, ``gc`` and ``export ID -O PATH`` call the
routes of ``daemon/servers/task_api.py`` on the socket (``-e``/``--endpoint``, default: the
daemon's default socket). ``import PATH --as hf://owner/repo[@rev]`` has the daemon read a
local copy of a hub repo into its store and the mesh (``daemon/servers/import_api.py``); it
waits for the import to finish (``--timeout`` does not apply: hashing a large repo takes long).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from damselfly.cli.dfctl_commands import Shown
from damselfly.config.paths import default_socket_path
from damselfly.core.errors import DamselflyError, UsageError

IMPORT_TIMEOUT = 24 * 3600.0
LOCAL_COMMANDS = ("task", "import", "export", "gc")
TASK_COLUMNS = [("ID", "task_id"), ("STATE", "state"), ("LENGTH", "content_length"),
                ("URL", "url")]  # fmt: skip


class DaemonCallError(DamselflyError):
    """The daemon is not there, or refused the call."""


def add_local_commands(nouns: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    task = nouns.add_parser("task", help="tasks in the local daemon's store")
    verbs = task.add_subparsers(dest="task_command", required=True, metavar="VERB")
    verbs.add_parser("ls", help="list tasks")
    for verb, text in (("stat", "one task"), ("rm", "remove a task now")):
        verbs.add_parser(verb, help=text).add_argument("task_id")
    nouns.add_parser("gc", help="collect garbage in the local daemon's store")
    export = nouns.add_parser("export", help="write a task's bytes to a file")
    export.add_argument("task_id")
    export.add_argument("-O", "--output-path", required=True, dest="output_path")
    export.add_argument("--overwrite", action="store_true")
    imported = nouns.add_parser("import", help="seed a hub repo from a local copy")
    imported.add_argument("path", help="the local copy (a clone, a local dir, a snapshot)")
    imported.add_argument(
        "--as", required=True, dest="repo", metavar="hf://owner/repo[@rev]",
        help="the repo and revision (default main) peers will ask for",
    )  # fmt: skip


def add_endpoint_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-e", "--endpoint", help="dfdaemon's socket (default: its default)")


async def run_local(args: argparse.Namespace, env: Mapping[str, str]) -> Shown:
    """The daemon's answer, as dfctl shows it."""
    socket = Path(args.endpoint) if args.endpoint else default_socket_path(env)
    method, path, body = _call_of(args)
    seconds = IMPORT_TIMEOUT if args.command == "import" else args.timeout
    answer = await _call(socket, method, path, body, seconds)
    if args.command == "task" and args.task_command in ("ls", "stat"):
        return Shown(answer, TASK_COLUMNS)
    return Shown(answer, message=_message(args, answer))


def _message(args: argparse.Namespace, answer: Any) -> str:
    if args.command == "gc":
        return f"freed {answer['freed_bytes']} bytes; {answer['usage_bytes']} bytes in use"
    if args.command == "export":
        return f"exported {args.task_id} to {answer['output']}"
    if args.command == "import":
        stand_in = " (a stand-in: the copy does not say its commit)" * answer["commit_is_stand_in"]
        what = f"{answer['files']} files ({answer['bytes']} bytes)"
        repo = f"{answer['repo']}@{answer['revision']}"
        return f"imported {what} as {repo}, commit {answer['commit']}{stand_in}"
    return f"removed task {args.task_id}"


def _call_of(args: argparse.Namespace) -> tuple[str, str, Any]:
    if args.command == "gc":
        return "POST", "/v1/gc", None
    if args.command == "import":
        repo, revision = split_revision(args.repo)
        body = {"path": os.path.abspath(args.path), "repo": repo, "revision": revision}
        return "POST", "/v1/imports", body
    if args.command == "export":
        output = os.path.abspath(args.output_path)
        return "POST", f"/v1/tasks/{args.task_id}/export", {
            "output": output, "overwrite": args.overwrite,
        }  # fmt: skip
    if args.task_command == "ls":
        return "GET", "/v1/tasks", None
    method = "GET" if args.task_command == "stat" else "DELETE"
    if not args.task_id.isalnum():
        raise UsageError(f"{args.task_id!r} is no task id")
    return method, f"/v1/tasks/{args.task_id}", None


def split_revision(value: str) -> tuple[str, str]:
    """``hf://owner/repo@rev`` -> (``hf://owner/repo``, ``rev``); the revision defaults to
    main. Only a repo: a path inside it cannot be imported alone."""
    repo, _, revision = value.partition("@")
    if not repo.startswith("hf://") or repo.count("/") not in (3, 4):
        raise UsageError(f"--as {value!r}: expected hf://owner/repo[@revision]")
    if "@" in value and not revision.strip():
        raise UsageError(f"--as {value!r}: empty revision after @")
    return repo, revision or "main"


async def _call(socket: Path, method: str, path: str, body: Any, seconds: float) -> Any:
    connector = aiohttp.UnixConnector(path=str(socket))
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as session,
            session.request(method, f"http://dfdaemon{path}", json=body) as response,
        ):
            payload = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DaemonCallError(f"dfdaemon at {socket}: {str(exc) or type(exc).__name__}") from exc
    if response.status >= 400:
        detail = payload.get("error") if isinstance(payload, dict) else None
        raise DaemonCallError(f"dfdaemon answered {response.status}: {detail or 'no detail'}")
    return payload
