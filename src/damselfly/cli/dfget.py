"""``dfget``: download one file, or a directory with ``-r``.

dfget first hands the download to the local dfdaemon (``-e/--endpoint``, default
``config/paths.default_socket_path``), which shares pieces with other nodes and keeps them in
its store; it replays the daemon's progress. With no daemon answering (or one running as
another user, or ``--standalone``), dfget downloads by itself ("standalone"): parallel range
requests from the origin into the same piece store a daemon uses, every piece hashed, the
output delivered atomically. Both run the same ``DownloadRequest``. Exit codes: 0 success,
1 failure, 2 usage error, 130 interrupted (verified pieces are kept for the next run; nothing
is left at ``-O``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from damselfly.backends.hub_options import HubOptions
from damselfly.cli.dfget_args import parse_args
from damselfly.cli.dfget_jobs import request_from_args
from damselfly.cli.interrupt import run_interruptibly
from damselfly.cli.progress import make_display
from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.config.paths import default_socket_path, store_dir
from damselfly.core.errors import EXIT_INTERRUPTED, EXIT_OK, DamselflyError, UsageError
from damselfly.core.units import format_size
from damselfly.core.urls import HubUrl
from damselfly.download.events import CountingObserver
from damselfly.download.request import DownloadRequest, uses_hub_cache
from damselfly.protocol.local_api import RunResult

log = logging.getLogger("damselfly.dfget")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    debug = False
    try:
        args = parse_args(argv, env)
        debug = args.log_level == "debug"
        configure_logging("dfget", args.log_level)
        return run_interruptibly(run(args, env))
    except KeyboardInterrupt:
        print("dfget: interrupted; verified pieces are kept for the next run", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DamselflyError as exc:
        return report_failure("dfget", exc, debug=debug)
    except Exception as exc:
        return report_failure("dfget", exc, debug=debug)


async def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    request = hub_defaults(request_from_args(args, env, Path.cwd()))
    if request.output is None and not uses_hub_cache(request):
        raise UsageError("-O/--output is required")
    display = make_display(enabled=not args.no_progress, many_files=args.recursive)

    async def fetch() -> RunResult:
        result = None
        if not args.standalone:
            from damselfly.cli.daemon_client import run_through_daemon

            endpoint = Path(args.endpoint) if args.endpoint else default_socket_path(env)
            explicit = bool(args.endpoint)
            result = await run_through_daemon(endpoint, request, display, explicit=explicit)
        return result or await _standalone(args, request, display, env)

    if isinstance(request.source_url, HubUrl):  # the hubs' caches may answer instead
        from damselfly.cli.hub_cache import run_or_cached

        store_root = store_dir(args.storage_dir, env)
        result = await run_or_cached("dfget", request, env, fetch, store_root)
    else:
        result = await fetch()
    _summarise(result)
    sys.stdout.write(result.stdout)
    return EXIT_OK


async def _standalone(
    args: argparse.Namespace,
    request: DownloadRequest,
    display: CountingObserver,
    env: Mapping[str, str],
) -> RunResult:
    if not request.back_to_source:
        why = "--standalone was given" if args.standalone else "no dfdaemon is answering"
        raise UsageError(f"{why} and --disable-back-to-source forbids the origin")
    # the download engine, only when dfget downloads by itself (start-up time of every dfget)
    from damselfly.backends.registry import default_registry
    from damselfly.download.jobs import DownloadContext
    from damselfly.download.request_jobs import backend_settings, fetch_policy, run_request
    from damselfly.storage.store import Store

    store = Store(store_dir(args.storage_dir, env))
    registry = default_registry(backend_settings(request))
    ctx = DownloadContext(
        store=store, registry=registry, observer=display, policy=fetch_policy(request)
    )
    try:
        with display:
            return await run_request(request, ctx)
    finally:
        await registry.aclose()
        store.close()


def hub_defaults(request: DownloadRequest) -> DownloadRequest:
    """A hub repo URL needs -r ("use -r"); a hub download without -O goes to the hub's cache,
    as ``hf download`` does."""
    url = request.source_url
    if not isinstance(url, HubUrl):
        return request
    if not url.path and not request.recursive:
        raise UsageError(f"{request.redacted_url()} names a repository, not a file: use -r")
    source = request.source  # not resolved_source: cached, it would outlive the copy
    if request.output is None and isinstance(source, HubOptions) and not source.cache:
        cached = source.model_copy(update={"cache": True})
        return request.model_copy(update={"source": cached})
    return request


def _summarise(result: RunResult) -> None:
    peers = f", {format_size(result.peer_bytes)} from peers" if result.peer_bytes else ""
    log.info(
        "%d file(s), %s; %s from the origin%s, %s reused from the store",
        result.files,
        format_size(result.bytes),
        format_size(result.source_bytes),
        peers,
        format_size(result.reused_bytes),
    )


if __name__ == "__main__":
    sys.exit(main())
