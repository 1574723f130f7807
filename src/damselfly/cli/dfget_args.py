"""dfget's command line: Dragonfly-compatible flags, each also settable as ``DFGET_<FLAG>``.

The environment is read when the parser is built (at run time, never at import): a flag on
the command line wins over its variable, which wins over the default. List flags take a
comma-separated variable (``DFGET_INCLUDE_FILES='*.json,*.safetensors'``).

The flags of one scheme (``--hf-*``, ``--ms-*``, ``--storage-*``) come from that scheme's
backend through the registry (``backends/options.py``), with the same ``DFGET_`` defaults.

``parse_args`` is the door: a usage error is one line (``UsageError``, exit 2) ending in "see
dfget --help", never argparse's usage block; every number is held to its range
(``NUMBER_RANGES``) whether it came from a flag or a variable; ``-I``/``--exclude`` on the
command line need ``-r``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from damselfly._version import __version__
from damselfly.backends.option_specs import options_catalog
from damselfly.core.errors import UsageError, shorten

LOG_LEVELS = ("error", "warn", "info", "debug")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
SEE_HELP = "see dfget --help"

# dest -> (flag, least, most or None): what each number may be, from a flag or DFGET_<FLAG>
NUMBER_RANGES: dict[str, tuple[str, int, int | None]] = {
    "priority": ("--priority", 0, 6),
    "concurrent_pieces": ("--concurrent-pieces", 1, 256),
    "origin_retries": ("--origin-retries", 0, 100),
    "max_files": ("--max-files", 1, None),
    "max_concurrent_requests": ("--max-concurrent-requests", 1, 256),
}


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, asking for the terminal's width once per process: argparse makes
    a formatter for every ``add_argument`` (to check its metavar), each asking the terminal,
    ~3 ms of every dfget's start-up (issue 15: small files)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_width())


_WIDTH: list[int] = []


def _terminal_width() -> int:
    """``shutil.get_terminal_size().columns - 2`` without importing ``shutil`` (and its
    compression modules: ~3 ms of a dfget's start-up)."""
    if not _WIDTH:
        _WIDTH.append(_columns() - 2)
    return _WIDTH[0]


def _columns() -> int:
    try:
        if (columns := int(os.environ.get("COLUMNS", "0"))) > 0:
            return columns
    except ValueError:
        pass
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """argparse whose complaints are a ``UsageError`` (one line), not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{shorten(message)} ({SEE_HELP})")


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """dfget's flags, parsed and checked (see the module docstring)."""
    args = build_parser(env).parse_args(argv)
    check_numbers(args)
    _check_recursive_only(args, _Env(env))
    return args


def check_numbers(args: argparse.Namespace) -> None:
    for dest, (flag, least, most) in NUMBER_RANGES.items():
        value = getattr(args, dest)
        if value is None or (least <= value and (most is None or value <= most)):
            continue
        bound = f"at least {least}" if most is None else f"from {least} to {most}"
        raise UsageError(f"{flag} {value}: must be {bound} ({SEE_HELP})")


def _check_recursive_only(args: argparse.Namespace, env: _Env) -> None:
    """A filter of a directory's files means nothing for one file: refuse it, rather than
    download the file whatever the filter says (a ``DFGET_`` variable may stay set)."""
    if args.recursive:
        return
    for dest, flag in (("include_files", "-I/--include-files"), ("exclude", "--exclude")):
        if len(getattr(args, dest)) > len(env.items(dest)):
            raise UsageError(f"{flag} selects files of a directory: it needs -r ({SEE_HELP})")


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
    parser = _Parser(
        prog="dfget",
        formatter_class=_Formatter,
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
        "-p", "--priority", type=int, default=_int(e.text("priority", "6")), help="0 to 6"
    )
    parser.add_argument(
        "--timeout", default=e.text("timeout", "2h"), help="give up after this long (default 2h)"
    )
    parser.add_argument("--overwrite", action="store_true", default=e.flag("overwrite"))
    parser.add_argument(
        "--force-hard-link",
        action="store_true",
        default=e.flag("force_hard_link"),
        help="fail instead of copying when the output cannot be hard-linked (and share the "
        "store's file even with another output)",
    )
    parser.add_argument(
        "--no-hard-link",
        action="store_true",
        default=e.flag("no_hard_link"),
        help="deliver a copy, never the store's own file (by default the output is a hard "
        "link to it where both are on one file system)",
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
        raise UsageError(f"environment value {shorten(value)!r}: not an integer") from None
