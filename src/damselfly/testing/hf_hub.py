"""The test Hugging Face hub (``damselfly.demo.hub.LocalHfHub``) under its test name, and a
command line that serves a directory as a repo (for tests and benchmarks)::

    python -m damselfly.testing.hf_hub --repo-dir DIR [--port N] [--repo-id owner/name]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from damselfly.demo.hub import REPO_TYPES, LocalHfHub
from damselfly.demo.hub_repos import DEFAULT_LFS_THRESHOLD, HubRepo, files_from_directory

HfTestHub = LocalHfHub

__all__ = ["HfTestHub", "main"]


# -- command line ------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a directory as a Hugging Face repo.")
    parser.add_argument("--repo-dir", type=Path, required=True)
    parser.add_argument("--repo-id", default="local/repo", help="owner/name (default local/repo)")
    parser.add_argument("--repo-type", default="models", choices=REPO_TYPES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cdn-port", type=int, default=0)
    parser.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    parser.add_argument("--token", action="append", default=[], help="makes the repo private")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    repo = HubRepo(
        args.repo_id,
        files_from_directory(args.repo_dir),
        repo_type=args.repo_type,
        private=bool(args.token),
        allowed_tokens=frozenset(args.token),
        lfs_threshold=args.lfs_threshold,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with LocalHfHub([repo], host=args.host, port=args.port, cdn_port=args.cdn_port) as hub:
        commit = repo.refs["main"]
        sys.stdout.write(
            f"hub {hub.endpoint} cdn {hub.cdn.base_url} repo {args.repo_id} commit {commit}\n"
            f"HF_ENDPOINT={hub.endpoint}\n"
        )
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve_forever(_parse_args(argv)))


if __name__ == "__main__":
    main()
