"""``damselfly download REPO_ID [FILES...]``: ``hf download`` (or, with ``--hub modelscope``,
the same for ModelScope) through damselfly.

Takes ``hf download``'s arguments and prints what it prints: the path of the snapshot folder
(or of the one file asked for, or the ``--local-dir``) on stdout, as ``✓ Downloaded`` /
``  path: ...`` (``--format human``, the default), ``path=...`` (``agent``), ``{"path": ...}``
(``json``) or the bare path (``-q``/``--quiet``). ``--dry-run`` prints huggingface_hub's
"Will download" line and file table. Files named as arguments select what is fetched (one
file: its path is printed; ``dir/``: the folder); ``--include``/``--exclude`` apply when no
file is named. The download runs as dfget's does: through the local dfdaemon (the mesh) when
one answers, else standalone into the same piece store; ``HF_HUB_OFFLINE=1`` and an
unreachable hub answer from the cache (``hub_cache.py``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from damselfly.backends.hf_options import HfOptions
from damselfly.backends.hub_options import HubOptions
from damselfly.backends.modelscope_options import (
    ModelScopeOptions,
    resolve_ms_endpoint,
    resolve_ms_token,
)
from damselfly.cli import dfget
from damselfly.cli.daemon_client import Handoff
from damselfly.cli.hub_cache import run_or_cached
from damselfly.cli.progress import make_display
from damselfly.config.paths import store_dir
from damselfly.core.errors import UsageError
from damselfly.download.request import DownloadRequest
from damselfly.download.request_checks import job_env
from damselfly.protocol.local_api import RunResult

FORMATS = ("auto", "human", "agent", "json", "quiet")
_PREFIXES = {"hf": {"model": "", "dataset": "datasets/", "space": "spaces/"}}
_PREFIXES["modelscope"] = {"model": "", "dataset": "datasets/"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo_id", help="owner/name")
    parser.add_argument("filenames", nargs="*", help="files (or dir/) to download")
    parser.add_argument("--hub", choices=("hf", "modelscope"), default="hf")
    parser.add_argument(
        "--repo-type", "--type", choices=("model", "dataset", "space"), default="model"
    )
    parser.add_argument("--revision")
    parser.add_argument("--include", action="append", default=[], help="glob (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], help="glob (repeatable)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--local-dir")
    parser.add_argument("--force-download", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument(
        "--token",
        help="visible to every user in the process list (ps): prefer HF_TOKEN / "
        "MODELSCOPE_API_TOKEN or the hub's token file (mode 0600)",
    )
    parser.add_argument("--max-workers", type=int, default=8)
    parser.add_argument("--format", choices=FORMATS, default="auto", dest="output_format")
    parser.add_argument("--json", action="store_const", const="json", dest="output_format")
    parser.add_argument("-q", "--quiet", action="store_const", const="quiet", dest="output_format")
    parser.add_argument("-e", "--endpoint", help="dfdaemon's unix socket (as dfget's -e)")
    parser.add_argument("--standalone", action="store_true", help="do not ask a dfdaemon")
    parser.add_argument("--storage-dir", help="piece store used when no daemon runs")


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    _check(args)
    if args.dry_run:
        from damselfly.cli.hub_dry_run import print_dry_run

        print_dry_run(args, _print)
        return 0
    request = build_request(args, env, Path.cwd())
    display = make_display(enabled=args.output_format != "quiet", many_files=True)

    def attempt() -> RunResult:
        return dfget.fetch(args, env, display, Handoff.of(request), lambda: request)

    store_root = store_dir(args.storage_dir, env)
    result = run_or_cached("damselfly", request, env, attempt, store_root)
    _print(args.output_format, _answer(args, request, result))
    return 0


def _check(args: argparse.Namespace) -> None:
    if args.local_dir is not None and args.cache_dir is not None:
        raise UsageError("cannot use both --local-dir and --cache-dir")
    if args.repo_type not in _PREFIXES[args.hub]:
        raise UsageError(f"--repo-type {args.repo_type}: not on {args.hub}")
    if args.repo_id.count("/") != 1:
        raise UsageError(f"{args.repo_id!r}: expected <owner>/<name>")
    if args.max_workers < 1:
        raise UsageError("--max-workers must be at least 1")


def selection(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """(include, exclude, the one file asked for): named files win over --include/--exclude."""
    names = list(args.filenames)
    if not names:
        return tuple(args.include), tuple(args.exclude), None
    if (args.include or args.exclude) and any(n.endswith("/") for n in names):
        raise UsageError("cannot combine a folder argument with --include/--exclude")
    single = names[0] if len(names) == 1 and not names[0].endswith("/") else None
    return tuple(names), (), single


def build_request(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> DownloadRequest:
    include, exclude, _ = selection(args)
    scheme = "hf" if args.hub == "hf" else "modelscope"
    url = f"{scheme}://{_PREFIXES[args.hub][args.repo_type]}{args.repo_id}"
    output = args.local_dir if args.local_dir is not None else args.cache_dir
    return DownloadRequest(
        url=url,
        output=str(cwd / Path(output).expanduser()) if output else None,
        recursive=True,
        include=include,
        exclude=exclude,
        overwrite=args.force_download,
        concurrent_files=args.max_workers,
        source=_options(args, env),
        env=job_env(env),
    )


def _options(args: argparse.Namespace, env: Mapping[str, str]) -> HubOptions:
    cache = args.local_dir is None
    if args.hub == "hf":
        return HfOptions.resolve(
            token=args.token, revision=args.revision, endpoint=None, env=env, cache=cache
        )
    token = resolve_ms_token(args.token, env)
    return ModelScopeOptions(
        token=SecretStr(token) if token else None,
        revision=args.revision or "master",
        endpoint=resolve_ms_endpoint(None, env),
        cache=cache,
    )


def _answer(args: argparse.Namespace, request: DownloadRequest, result: RunResult) -> str:
    _, _, single = selection(args)
    if args.local_dir is not None:
        root = os.path.realpath(request.output or args.local_dir)
    else:
        root = result.stdout.strip()
    return f"{root}/{single}" if single else root


def _print(output_format: str, path: str) -> None:
    if output_format == "quiet":
        print(path)
    elif output_format == "agent":
        print(f"path={path}")
    elif output_format == "json":
        print(json.dumps({"path": path}))
    else:
        print(f"✓ Downloaded\n  path: {path}")
