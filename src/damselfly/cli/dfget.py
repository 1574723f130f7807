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
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damselfly.cli.daemon_client import Handoff, run_through_daemon
from damselfly.cli.dfget_args import parse_args
from damselfly.cli.dfget_jobs import request_fields
from damselfly.cli.progress import make_display
from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.config.paths import default_socket_path, store_dir
from damselfly.core.errors import EXIT_INTERRUPTED, EXIT_OK, DamselflyError, UsageError
from damselfly.core.units import format_size
from damselfly.download.events import CountingObserver
from damselfly.protocol.local_api import RunResult

if TYPE_CHECKING:
    from damselfly.download.request import DownloadRequest

VERBOSE = frozenset({"info", "debug"})  # log levels at which a plain hand-off logs anything


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    if argv is None and env is None:  # the command itself, not a caller's in-process run
        # pydantic looks for plugins in every installed package's metadata the first time a
        # model is built (~20 ms of a hub file's hand-off, issue 15); dfget's models have none
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    env = os.environ if env is None else env
    debug = False
    try:
        args = parse_args(argv, env)
        debug = args.log_level == "debug"
        if args.log_level in VERBOSE or "logging" in sys.modules:  # set up before: again
            configure_logging("dfget", args.log_level)
        return run(args, env)
    except KeyboardInterrupt:
        print("dfget: interrupted; verified pieces are kept for the next run", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DamselflyError as exc:
        return report_failure("dfget", exc, debug=debug)
    except Exception as exc:
        return report_failure("dfget", exc, debug=debug)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    fields = request_fields(args, env, Path.cwd(), plain=True)
    if fields["source"] is None or isinstance(fields["source"], dict):
        result = _run_plain(args, env, fields)
    else:
        result = _run_with_options(args, env, _model(fields, args.log_level))
    _summarise(result, args.log_level)
    sys.stdout.write(result.stdout)
    return EXIT_OK


def _run_plain(
    args: argparse.Namespace, env: Mapping[str, str], fields: dict[str, Any]
) -> RunResult:
    """No request model on the way: a scheme without options, or a hub (hf://, modelscope://)
    with its options as JSON. The model is built only if dfget downloads by itself or a hub's
    cache answers."""
    if fields["source"] is not None:
        hub_defaults(fields)
    if fields["output"] is None and not (fields["source"] or {}).get("cache"):
        raise UsageError("-O/--output is required")
    display = make_display(enabled=not args.no_progress, many_files=args.recursive)
    handoff = Handoff.from_fields(fields)

    def model() -> DownloadRequest:
        return _model(fields, args.log_level)

    def attempt() -> RunResult:
        return fetch(args, env, display, handoff, model)

    if fields["source"] is None:
        return attempt()
    from damselfly.cli.hub_cache import run_or_cached_lazily
    from damselfly.core.urls import parse_url

    store = store_dir(args.storage_dir, env)
    return run_or_cached_lazily("dfget", parse_url(fields["url"]), model, env, attempt, store)


def hub_defaults(fields: dict[str, Any]) -> None:
    """A hub repo URL needs -r ("use -r"); a hub download without -O goes to the hub's cache,
    as ``hf download`` does (``fields["source"]``: the hub's options as plain JSON)."""
    from damselfly.core.urls import HubUrl, parse_url

    url = parse_url(fields["url"])
    if not isinstance(url, HubUrl):
        return
    if not url.path and not fields["recursive"]:
        raise UsageError(f"{url.redacted()} names a repository, not a file: use -r")
    if fields["output"] is None:
        fields["source"] = {**fields["source"], "cache": True}


def _run_with_options(
    args: argparse.Namespace, env: Mapping[str, str], request: DownloadRequest
) -> RunResult:
    """A scheme whose options only its model resolves (object stores): the model on the way."""
    from damselfly.download.request import uses_hub_cache

    if request.output is None and not uses_hub_cache(request):
        raise UsageError("-O/--output is required")
    display = make_display(enabled=not args.no_progress, many_files=args.recursive)
    return fetch(args, env, display, Handoff.of(request), lambda: request)


def fetch(
    args: argparse.Namespace,
    env: Mapping[str, str],
    display: CountingObserver,
    handoff: Handoff,
    request: Callable[[], DownloadRequest],
) -> RunResult:
    """Through the daemon, else standalone (``request()``: the model, built only then)."""
    if not args.standalone:
        endpoint = Path(args.endpoint) if args.endpoint else default_socket_path(env)
        explicit = bool(args.endpoint)
        result = run_through_daemon(endpoint, handoff, display, explicit=explicit)
        if result is not None:
            return result
    from damselfly.cli.interrupt import run_interruptibly

    return run_interruptibly(_standalone(args, request(), display, env))


def _model(fields: dict[str, Any], log_level: str) -> DownloadRequest:
    """The request model, once dfget downloads by itself (with logging set up: the engine
    logs; a download handed to the daemon at ``warn`` needs neither)."""
    from damselfly.download.request import DownloadRequest

    configure_logging("dfget", log_level)
    return DownloadRequest(**fields)


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


def _summarise(result: RunResult, level: str) -> None:
    if level not in VERBOSE:
        return
    import logging

    peers = f", {format_size(result.peer_bytes)} from peers" if result.peer_bytes else ""
    logging.getLogger("damselfly.dfget").info(
        "%d file(s), %s; %s from the origin%s, %s reused from the store",
        result.files,
        format_size(result.bytes),
        format_size(result.source_bytes),
        peers,
        format_size(result.reused_bytes),
    )


if __name__ == "__main__":
    sys.exit(main())
