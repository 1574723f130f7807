"""``dfget``: download one file, or a directory with ``-r``.

With no dfdaemon answering on the local socket, dfget downloads by itself ("standalone"):
parallel range requests from the origin into the same piece store a daemon uses, every piece
hashed, the output delivered atomically. Exit codes: 0 success, 1 failure, 2 usage error,
130 interrupted (verified pieces are kept for the next run; nothing is left at ``-O``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from damselfly.backends.registry import BackendSettings, default_registry
from damselfly.cli.dfget_args import build_parser
from damselfly.cli.dfget_jobs import (
    build_file_job,
    build_hub_layout,
    build_tree_job,
    uses_hub_cache,
)
from damselfly.cli.progress import make_display
from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.core.errors import EXIT_OK, DamselflyError, UsageError
from damselfly.core.units import format_size, parse_duration, parse_size
from damselfly.core.urls import HubUrl, parse_url
from damselfly.download.events import CountingObserver
from damselfly.download.file_download import deadline, download_file
from damselfly.download.hub_layouts import HubLayout, download_hub_file
from damselfly.download.jobs import DownloadContext, FileResult
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.download.tree_download import download_tree
from damselfly.storage.store import Store, default_store_dir

log = logging.getLogger("damselfly.dfget")

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    debug = False
    try:
        args = build_parser(env).parse_args(argv)
        debug = args.log_level == "debug"
        configure_logging("dfget", args.log_level)
        return asyncio.run(run(args, env))
    except KeyboardInterrupt:
        print("dfget: interrupted; verified pieces are kept for the next run", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DamselflyError as exc:
        return report_failure("dfget", exc, debug=debug)
    except Exception as exc:
        return report_failure("dfget", exc, debug=debug)


async def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if not args.output and not uses_hub_cache(args):
        raise UsageError("-O/--output is required")
    if args.disable_back_to_source:
        raise UsageError("no dfdaemon is answering and --disable-back-to-source forbids the origin")
    timeout = parse_duration(args.timeout, what="--timeout")
    layout = build_hub_layout(args, env)
    store = Store(Path(args.storage_dir) if args.storage_dir else default_store_dir())
    attempts = max(0, args.origin_retries) + 1
    registry = default_registry(BackendSettings(request_attempts=attempts))
    display = make_display(enabled=not args.no_progress, many_files=args.recursive)
    policy = FetchPolicy(concurrency=max(1, args.concurrent_pieces), piece_attempts=attempts)
    ctx = DownloadContext(store=store, registry=registry, observer=display, policy=policy)
    try:
        with display:
            async with deadline(timeout, args.url):
                results = await _download(args, env, ctx, layout)
    finally:
        await registry.aclose()
        store.close()
    _summarise(results, display)
    _announce(args, layout)
    return EXIT_OK


async def _download(
    args: argparse.Namespace,
    env: Mapping[str, str],
    ctx: DownloadContext,
    layout: HubLayout | None,
) -> list[FileResult]:
    piece_length = (
        parse_size(args.piece_length, what="--piece-length") if args.piece_length else None
    )
    if args.recursive:
        return await download_tree(build_tree_job(args, env, piece_length, layout), ctx)
    if layout is not None:
        result = await download_hub_file(build_file_job(args, env, piece_length), layout, ctx)
        return [result] if result is not None else []
    return [await download_file(build_file_job(args, env, piece_length), ctx)]


def _announce(args: argparse.Namespace, layout: HubLayout | None) -> None:
    """With a hub cache, the path of what was asked for is the command's data (stdout),
    printed once the progress display is gone."""
    url = parse_url(args.url)
    where = layout.location(url.path) if layout and isinstance(url, HubUrl) else None
    if where is not None and uses_hub_cache(args):
        print(where)


def _summarise(results: list[FileResult], display: CountingObserver) -> None:
    total = sum(r.content_length for r in results)
    fetched = sum(r.source_bytes for r in results)
    log.info(
        "%d file(s), %s; %s from the origin, %s reused from the store",
        len(results),
        format_size(total),
        format_size(fetched),
        format_size(sum(r.reused_bytes for r in results)),
    )


if __name__ == "__main__":
    sys.exit(main())
