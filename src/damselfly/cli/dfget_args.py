"""dfget's command line: Dragonfly-compatible flags, each also settable as ``DFGET_<FLAG>``.

The environment is read when the parser is built (at run time, never at import): a flag on
the command line wins over its variable, which wins over the default. List flags take a
comma-separated variable (``DFGET_INCLUDE_FILES='*.json,*.safetensors'``).

The flags of one scheme (``--hf-*``, ``--ms-*``, ``--storage-*``) come from that scheme's
backend through the registry (``backends/options.py``), with the same ``DFGET_`` defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from damselfly._version import __version__
from damselfly.backends.registry import options_catalog
from damselfly.core.errors import UsageError

LOG_LEVELS = ("error", "warn", "info", "debug")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def raw(self, dest: str) -> str | None:
        return self._env.get(f"DFGET_{dest.upper()}")

    def text(self, dest: str, default: str | None = None) -> str | None:
        value = self.raw(dest)
        return default if value is None else value

    def flag(self, dest: str) -> bool:
        value = self.raw(dest)
        return value is not None and value.strip().lower() in TRUE_WORDS

    def items(self, dest: str) -> list[str]:
        value = self.raw(dest)
        return [v.strip() for v in value.split(",") if v.strip()] if value else []


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    e = _Env(env)
    parser = argparse.ArgumentParser(
        prog="dfget",
        description="Download a file or a directory (-r) through the damselfly mesh, "
        "or straight from the origin when no dfdaemon is running.",
    )
    parser.add_argument(
        "url",
        nargs="?" if e.raw("url") else None,
        default=e.text("url"),
        help="http(s)://, file://, s3:// (gs, abs, oss, obs, cos, hdfs), hf://, modelscope://",
    )
    parser.add_argument(
        "-O",
        "--output",
        default=e.text("output"),
        help="output file, or directory with -r (required unless --hf-cache/--ms-cache)",
    )
    parser.add_argument("-r", "--recursive", action="store_true", default=e.flag("recursive"))
    parser.add_argument(
        "--digest",
        default=e.text("digest"),
        help="verify the whole file: crc32:HEX, sha256:HEX or sha512:HEX",
    )
    parser.add_argument(
        "--piece-length",
        default=e.text("piece_length"),
        help="piece length, e.g. 4MiB (default: by file size)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=e.items("header"),
        help="'Name: value' sent to the origin (repeatable)",
    )
    parser.add_argument("--tag", default=e.text("tag", ""))
    parser.add_argument("--application", default=e.text("application", ""))
    parser.add_argument(
        "-p", "--priority", type=int, choices=range(7), default=_int(e.text("priority", "6"))
    )
    parser.add_argument(
        "--timeout", default=e.text("timeout", "2h"), help="give up after this long (default 2h)"
    )
    parser.add_argument("--overwrite", action="store_true", default=e.flag("overwrite"))
    parser.add_argument(
        "--force-hard-link",
        action="store_true",
        default=e.flag("force_hard_link"),
        help="fail instead of copying when the output cannot be hard-linked",
    )
    parser.add_argument(
        "--disable-back-to-source", action="store_true", default=e.flag("disable_back_to_source")
    )
    parser.add_argument(
        "--content-for-calculating-task-id", default=e.text("content_for_calculating_task_id")
    )
    parser.add_argument(
        "--filtered-query-param",
        action="append",
        default=e.items("filtered_query_param"),
        help="query parameter left out of the task id (repeatable)",
    )
    parser.add_argument(
        "-I",
        "--include-files",
        "--include",  # hf download's spelling
        action="append",
        default=e.items("include_files"),
        help="with -r: glob of files to download (repeatable)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=e.items("exclude"),
        help="with -r: glob of files to skip (repeatable)",
    )
    parser.add_argument(
        "--max-files",
        type=int,
        default=_int(e.text("max_files")),
        help="with -r: refuse listings with more files (default: no limit)",
    )
    parser.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=_int(e.text("max_concurrent_requests", "5")),
        help="with -r: files downloaded at once (default 5)",
    )
    parser.add_argument(
        "--concurrent-pieces",
        type=int,
        default=_int(e.text("concurrent_pieces", "8")),
        help="range requests in flight per file (default 8)",
    )
    parser.add_argument(
        "--origin-retries",
        type=int,
        default=_int(e.text("origin_retries", "4")),
        help="retries of a failed origin request or piece (default 4)",
    )
    parser.add_argument("--no-progress", action="store_true", default=e.flag("no_progress"))
    parser.add_argument(
        "-e",
        "--endpoint",
        default=e.text("endpoint"),
        help="dfdaemon's unix socket (default: /var/run/damselfly/dfdaemon.sock for root, "
        "else $XDG_RUNTIME_DIR/damselfly/dfdaemon.sock)",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        default=e.flag("standalone"),
        help="download by this process alone; do not ask a dfdaemon",
    )
    parser.add_argument(
        "--storage-dir", default=e.text("storage_dir"), help="piece store used when no daemon runs"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=e.flag("insecure"),
        help="do not verify the origin's TLS certificate",
    )
    parser.add_argument(
        "-l", "--log-level", choices=LOG_LEVELS, default=e.text("log_level", "warn")
    )
    options_catalog().add_flags(parser, e)  # each scheme's own flags (hubs, object storage)
    parser.add_argument("-V", "--version", action="version", version=f"dfget {__version__}")
    return parser


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment value {value!r}: not an integer") from None
