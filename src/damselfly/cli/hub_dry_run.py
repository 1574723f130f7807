"""``damselfly download --dry-run``: what would be fetched, printed as ``hf download
--dry-run`` prints it (a "Will download" line, then a FILE/SIZE table; sizes only for files
that would be downloaded). Asks the hub through the Python API's ``dry_run`` (Hugging Face
only)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from damselfly.core.errors import UsageError


def print_dry_run(args: argparse.Namespace, _print: Callable[[str, str], None]) -> None:
    if args.hub != "hf":
        raise UsageError("--dry-run is available for --hub hf only")
    infos = _dry_run(args)
    will = [i for i in infos if i.will_download]
    sizes = [i.file_size for i in will]
    total = None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)
    size_text = format_size(total) if total is not None else "an unknown size"
    if args.output_format not in ("json", "quiet"):
        counts = f"{len(will)} files (out of {len(infos)})"
        print(f"[dry-run] Will download {counts} totalling {size_text}.")
    rows = [{"file": i.filename, "size": _size_cell(i)} for i in sorted(infos, key=_name)]
    _table(args.output_format, rows)


def _size_cell(info: Any) -> str:
    return format_size(info.file_size) if info.will_download and info.file_size else "-"


def _name(info: Any) -> str:
    return str(info.filename)


def _dry_run(args: argparse.Namespace) -> Sequence[Any]:
    from damselfly.api.hf import hf_hub_download, snapshot_download
    from damselfly.cli.hub_download import selection

    include, exclude, single = selection(args)
    common: dict[str, Any] = {
        "repo_type": args.repo_type,
        "revision": args.revision,
        "cache_dir": args.cache_dir,
        "local_dir": args.local_dir,
        "token": args.token,
        "force_download": args.force_download,
        "library_name": "damselfly-cli",
        "storage_dir": args.storage_dir,
        "dry_run": True,
    }
    if single is not None:
        return [hf_hub_download(args.repo_id, single, **common)]
    allow, ignore = list(include) or None, list(exclude) or None
    found = snapshot_download(
        args.repo_id, allow_patterns=allow, ignore_patterns=ignore,
        max_workers=args.max_workers, **common,
    )  # fmt: skip
    assert isinstance(found, list)
    return found


def format_size(length: int) -> str:
    """huggingface_hub's size format: decimal units, one decimal (``1.3M``)."""
    value = float(length)
    for unit in ("", "K", "M", "G", "T", "P", "E", "Z"):
        if abs(value) < 1000.0:
            return f"{value:3.1f}{unit}"
        value /= 1000.0
    return f"{value:.1f}Y"


def _table(output_format: str, rows: list[dict[str, str]]) -> None:
    if output_format == "json":
        print(json.dumps(rows))
    elif output_format == "quiet":
        print("\n".join(r["file"] for r in rows))
    elif output_format == "agent":
        print("\n".join(["file\tsize", *(f"{r['file']}\t{r['size']}" for r in rows)]))
    elif not rows:
        print("No results found.")
    else:
        headers = ["FILE", "SIZE"]
        table = [headers, *([r["file"], r["size"]] for r in rows)]
        widths = [max(len(row[i]) for row in table) for i in range(2)]
        table.insert(1, ["-" * w for w in widths])
        print("\n".join(f"{a:<{widths[0]}} {b:<{widths[1]}}" for a, b in table))
