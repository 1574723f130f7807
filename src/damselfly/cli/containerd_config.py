"""``damselfly containerd-config``: point containerd at the node daemon's registry mirror.

For each ``--registry`` it writes ``<dir>/<registry>/hosts.toml`` (containerd's hosts
directory format, read when ``config_path`` is set in containerd's CRI registry config)::

    server = "https://registry-1.docker.io"

    [host."http://127.0.0.1:65001"]
      capabilities = ["pull", "resolve"]

containerd tries the mirror first and the ``server`` after it, and tells the mirror which
registry a request is for with ``?ns=docker.io``, so one mirror serves every registry.
containerd reads these files on each pull: nothing has to be restarted. The command is
idempotent (a file with the wanted content is left alone, so an init container that runs at
every boot changes nothing); a file it replaces is kept as ``hosts.toml.<UTC time>.bak``.
``--dry-run`` prints what would be written and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from damselfly.cli.reporting import report_failure
from damselfly.core.errors import EXIT_OK, DamselflyError, UsageError

PROG = "damselfly containerd-config"
DEFAULT_MIRROR = "http://127.0.0.1:65001"
DEFAULT_DIR = Path("/etc/containerd/certs.d")
HEADER = "# Written by damselfly containerd-config: the node's dfdaemon mirrors this registry.\n"
UPSTREAMS = {"docker.io": "https://registry-1.docker.io"}  # where docker.io really answers
REGISTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")


class ContainerdConfigError(DamselflyError):
    """A hosts.toml file could not be read or written."""


@dataclass(frozen=True)
class Change:
    registry: str
    path: Path
    action: str  # created, updated, unchanged
    content: str
    backup: Path | None = None


def hosts_toml(registry: str, mirror: str) -> str:
    """The wanted hosts.toml for one registry (TOML by hand: two keys, quoted safely)."""
    server = UPSTREAMS.get(registry, f"https://{registry}")
    return (
        f'{HEADER}server = "{server}"\n\n[host."{mirror}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def check_registry(registry: str) -> str:
    if not REGISTRY.match(registry):
        raise UsageError(
            f"--registry {registry!r}: expected a host name like docker.io or host:5000"
        )
    return registry


def check_mirror(mirror: str) -> str:
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https") or not parts.netloc or '"' in mirror:
        raise UsageError(f"--mirror {mirror!r}: expected http://host:port")
    return mirror.rstrip("/")


def plan(directory: Path, registry: str, mirror: str) -> Change:
    path = directory / registry / "hosts.toml"
    wanted = hosts_toml(registry, mirror)
    try:
        current = path.read_text(encoding="utf-8") if path.exists() else None
    except OSError as exc:
        raise ContainerdConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if current is None:
        return Change(registry, path, "created", wanted)
    if current == wanted:
        return Change(registry, path, "unchanged", wanted)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Change(registry, path, "updated", wanted, path.with_name(f"hosts.toml.{stamp}.bak"))


def apply(change: Change) -> None:
    """Write ``change`` atomically (temp file + rename), after the backup of the old file."""
    if change.action == "unchanged":
        return
    try:
        change.path.parent.mkdir(parents=True, exist_ok=True)
        if change.backup is not None:
            shutil.copy2(change.path, change.backup)
        fd, temp = tempfile.mkstemp(dir=change.path.parent, prefix=".hosts.toml.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(change.content)
        os.chmod(temp, 0o644)
        os.replace(temp, change.path)
    except OSError as exc:
        raise ContainerdConfigError(f"cannot write {change.path}: {exc.strerror or exc}") from exc


def describe(change: Change, dry_run: bool) -> str:
    verb = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}
    action = verb[change.action] if dry_run else change.action
    backup = f" (backup: {change.backup})" if change.backup is not None else ""
    return f"{change.registry}: {action} {change.path}{backup}"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--registry", action="append", required=True, help="registry host, e.g. docker.io"
    )
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help=f"default {DEFAULT_MIRROR}")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        mirror = check_mirror(args.mirror)
        changes = [plan(args.dir, check_registry(r), mirror) for r in dict.fromkeys(args.registry)]
        for change in changes:
            if not args.dry_run:
                apply(change)
            print(describe(change, args.dry_run))
            if args.dry_run and change.action != "unchanged":
                print(change.content, end="")
    except DamselflyError as exc:
        return report_failure(PROG, exc, debug=False)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog=PROG, description=__doc__))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
